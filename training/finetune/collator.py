"""Training batches built with the engine's own input code, loss on the answer only.

TRL's vision collator re-renders conversations itself and lets the InternVL processor
split each frame into several tiles (`crop_to_patches` defaults to True for images),
which is not what inference feeds the model. So the batches are built here with
`engine.prompt.encode_clip` (the exact prompt, one tile per frame) followed by
`engine.prompt.answer_ids` (the gloss + end-of-turn token, as scoring appends them).
Labels are -100 everywhere except on those answer tokens: the model learns to answer,
not to reproduce the prompt, the image placeholders or the padding.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping, Sequence

import torch

from engine import answer_ids, encode_clip

IGNORE = -100


class ClipCollator:
    """Turns dataset rows ({clip, gloss, ...}) into model inputs with answer-only labels."""

    def __init__(self, processor: Any, dataset: Any, question: str, *, pixel_dtype: torch.dtype = torch.float32, cache_mb: float = 1024):
        self.processor = processor
        self.dataset = dataset
        self.question = question
        self.pixel_dtype = pixel_dtype
        # Decoded frames per clip: sampling is deterministic, so epochs 2+ skip the decoding.
        # Bounded in bytes, not clips: a 448 px 8-frame clip is ~4.8 MB, and a dataset of
        # thousands of clips would otherwise sit in RAM beside the model.
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_bytes, self._cache_limit = 0, int(cache_mb * 2**20)

    def encode(self, row: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """One example: prompt ids + answer ids, labels on the answer, pixel values."""
        frames = self._frames(row)
        inputs = encode_clip(self.processor, frames, self.question)
        prompt = inputs["input_ids"][0].tolist()
        answer = answer_ids(self.processor.tokenizer, row["gloss"])
        return {
            "input_ids": torch.tensor(prompt + answer),
            "labels": torch.tensor([IGNORE] * len(prompt) + answer),
            "pixel_values": inputs["pixel_values"].to(self.pixel_dtype),
        }

    def describe(self, row: Mapping[str, Any]) -> str:
        """One example as text, for the run's log: what the model reads, and what it learns to answer.

        Image placeholder tokens are left out of the reading; the answer is exactly the
        labelled tokens, so the log shows that the loss falls on the gloss alone.
        """
        example = self.encode(row)
        tokenizer = self.processor.tokenizer
        image_tokens = {tokenizer.convert_tokens_to_ids(t) for t in ("<IMG_CONTEXT>", "<img>", "</img>")}
        labels = example["labels"].tolist()
        read = [t for t, label in zip(example["input_ids"].tolist(), labels) if label == IGNORE and t not in image_tokens]
        answer = [label for label in labels if label != IGNORE]
        return f"reads {tokenizer.decode(read)!r}, learns to answer {tokenizer.decode(answer)!r}"

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        examples = [self.encode(row) for row in rows]
        length = max(len(e["input_ids"]) for e in examples)
        pad = self.processor.tokenizer.pad_token_id
        input_ids = torch.full((len(examples), length), pad, dtype=torch.long)
        labels = torch.full((len(examples), length), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(examples), length), dtype=torch.long)
        for i, example in enumerate(examples):
            n = len(example["input_ids"])
            input_ids[i, :n], labels[i, :n], attention[i, :n] = example["input_ids"], example["labels"], 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            "pixel_values": torch.cat([e["pixel_values"] for e in examples]),
        }

    def _frames(self, row: Mapping[str, Any]):
        key = row["clip"]
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        frames = self.dataset.frames(row).frames
        self._cache[key] = frames
        self._cache_bytes += sum(frame.nbytes for frame in frames)
        while self._cache and self._cache_bytes > self._cache_limit:
            _, dropped = self._cache.popitem(last=False)
            self._cache_bytes -= sum(frame.nbytes for frame in dropped)
        return frames
