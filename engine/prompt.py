"""The exact conversation the model sees for a clip: shared by inference and training.

Fine-tuning only teaches what inference asks. The original product trained on one text
format and inferred with another; here both build their messages with these functions,
so the chat template, the frame layout and the answer format cannot drift apart.

Frames are laid out as transformers' InternVL video path does (`Frame1: <image>\\n...`,
one 448 px tile per frame), but built from frames we decoded ourselves: transformers'
own video loading needs torchcodec, and TRL's vision collator takes images only.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image

END_OF_TURN = "<|im_end|>"


def clip_messages(num_frames: int, question: str) -> list[dict]:
    """The user turn: `Frame1: <image>` ... `FrameN: <image>`, then the question."""
    content: list[dict] = []
    for index in range(1, num_frames + 1):
        content.append({"type": "text", "text": f"Frame{index}: "})
        content.append({"type": "image"})
    content.append({"type": "text", "text": question})
    return [{"role": "user", "content": content}]


def text_messages(text: str) -> list[dict]:
    """A text-only user turn (sentence building uses the language model alone)."""
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def encode_clip(processor: Any, frames: Sequence[np.ndarray], question: str) -> Any:
    """Tokenize the user turn and preprocess the frames: the model's input up to the answer.

    `crop_to_patches=False` keeps one tile per frame: the InternVL processor would
    otherwise split each frame into several tiles, multiplying the visual tokens.
    """
    text = processor.apply_chat_template(clip_messages(len(frames), question), add_generation_prompt=True, tokenize=False)
    images = [Image.fromarray(np.asarray(frame)) for frame in frames]
    return processor(text=[text], images=images, crop_to_patches=False, return_tensors="pt")


def answer_ids(tokenizer: Any, gloss: str) -> list[int]:
    """The answer's tokens as scored and as trained: the gloss, then the end-of-turn token.

    Tokenized on its own and appended to the prompt's ids, in both places, so scoring and
    training cannot disagree about where the answer starts.
    """
    return tokenizer(gloss, add_special_tokens=False).input_ids + [tokenizer.convert_tokens_to_ids(END_OF_TURN)]
