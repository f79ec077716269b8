"""The exact conversation the model sees for a clip: shared by inference and training.

Fine-tuning only teaches what inference asks. The original product trained on one text
format and inferred with another; here both build their messages with these functions,
so the chat template, the frame layout and the answer format cannot drift apart.

Frames are laid out as transformers' InternVL video path does (`Frame1: <image>\\n...`,
one tile per frame), but built from frames we decoded ourselves: transformers' own video
loading needs torchcodec, and TRL's vision collator takes images only.

The tile's size comes from the input profile (`frame_tile`): the processor then resizes
each frame to it and expands each image to the matching number of tokens
(`sized_processor`), so the vision tower's output and the prompt's placeholders agree.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image

from engine.errors import ConfigError

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


@dataclass(frozen=True)
class FrameTile:
    """The square each frame is resized to, and the language-model tokens it becomes."""

    pixels: int
    # After the projector's pixel shuffle: (pixels / patch)^2 x downsample_ratio^2.
    tokens: int


def frame_tile(model_config: Any, image_scale: float, *, profile: str = "") -> FrameTile:
    """The tile of a profile's `image_scale` on this model (InternVL config), or one sentence why not.

    The vision tower cuts the tile into patches and the projector merges each 2x2 block of
    them (downsample_ratio 0.5), so the tile must be a whole, even number of patches.
    """
    vision = model_config.vision_config
    native = _side(vision.image_size)
    patch = _side(vision.patch_size)
    merge = round(1 / model_config.downsample_ratio)
    pixels = round(native * image_scale)
    step = patch * merge
    if pixels < step or pixels % step:
        below = max(1, pixels // step)
        fits = [f"{k * step / native:g}" for k in (below, below + 1)]
        raise ConfigError(
            f"The profile {profile or 'chosen'} asks for image_scale {image_scale:g}, a {pixels} px tile, which this "
            f"model's {patch} px patches cannot split into an even grid: use a scale that gives a multiple of "
            f"{step} px, such as {' or '.join(fits)}."
        )
    return FrameTile(pixels, (pixels // step) ** 2)


def sized_processor(processor: Any, tile: FrameTile) -> Any:
    """`processor`, or a shallow copy of it that resizes frames to `tile` and expands each
    image to `tile.tokens` placeholders (InternVL's processor keeps both as attributes, not
    call options). The tokenizer and chat template are shared with the original."""
    size = processor.image_processor.size
    if processor.image_seq_length == tile.tokens and (size.height, size.width) == (tile.pixels, tile.pixels):
        return processor
    sized = copy.copy(processor)
    sized.image_processor = copy.copy(processor.image_processor)
    sized.image_processor.size = type(size)(height=tile.pixels, width=tile.pixels)
    sized.image_seq_length = tile.tokens
    return sized


def _side(value: Any) -> int:
    return int(value[0] if isinstance(value, (list, tuple)) else value)


def answer_ids(tokenizer: Any, gloss: str) -> list[int]:
    """The answer's tokens as scored and as trained: the gloss, then the end-of-turn token.

    Tokenized on its own and appended to the prompt's ids, in both places, so scoring and
    training cannot disagree about where the answer starts.
    """
    return tokenizer(gloss, add_special_tokens=False).input_ids + [tokenizer.convert_tokens_to_ids(END_OF_TURN)]
