"""The exact conversation the model sees for a clip: shared by inference and training.

Fine-tuning only teaches what inference asks. The original product trained on one text
format and inferred with another; here both build their messages with these functions,
so the chat template, the frame layout and the answer format cannot drift apart.

Frames are laid out as transformers' InternVL video path does (`Frame1: <image>\\n...`,
one 448 px tile per frame), but built from frames we decoded ourselves: transformers'
own video loading needs torchcodec, and TRL's vision collator takes images only.
"""

from __future__ import annotations


def clip_messages(num_frames: int, question: str) -> list[dict]:
    """The user turn: `Frame1: <image>` ... `FrameN: <image>`, then the question."""
    content: list[dict] = []
    for index in range(1, num_frames + 1):
        content.append({"type": "text", "text": f"Frame{index}: "})
        content.append({"type": "image"})
    content.append({"type": "text", "text": question})
    return [{"role": "user", "content": content}]


def answer_messages(gloss: str) -> list[dict]:
    """The assistant turn that training supervises: the gloss alone, as it is scored."""
    return [{"role": "assistant", "content": [{"type": "text", "text": gloss}]}]


def text_messages(text: str) -> list[dict]:
    """A text-only user turn (sentence building uses the language model alone)."""
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]
