"""A tiny random-weight InternVL, saved as a model folder that loads like the real one.

Weights cannot be downloaded on every machine that runs this project (CI, offline
laptops), yet the engine, the web app and the fine-tuning code must run their real code
paths: `AutoProcessor` + `AutoModelForImageTextToText` from a folder, the official
processor classes, the chat template and the image-token expansion. This module writes
such a folder with the same architecture (InternViT vision tower, pixel-shuffle
projector, Qwen2 language model) at toy sizes, and a byte-level BPE tokenizer trained
on the spot with the special tokens InternVL-hf uses.

    python -m engine make-tiny /tmp/tiny-internvl
    python -m engine make-tiny /tmp/tiny-internvl-1b --like 1b
    SIGNLENS_MODEL=/tmp/tiny-internvl python app.py

Its predictions are random until it is fine-tuned; it exists for tests, benchmarks and
UI work without weights.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

# The real InternVL3-hf template (transformers' convert_internvl_weights_to_hf.py, as
# published on the hub): an image item becomes `<IMG_CONTEXT>\n`, which the processor
# expands to `<img>` + image_seq_length context tokens + `</img>`.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{'<|im_end|>\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]

# The published InternVL3 models these stand in for, as tiny shapes of the same family.
# Both share the InternViT-300M vision tower; what differs is the language model:
# InternVL3-2B has Qwen2.5-1.5B (hidden 1536 = the vision width x 1.5, 12 query heads per
# 2 KV heads), InternVL3-1B has Qwen2.5-0.5B (hidden 896, narrower than the vision tower's
# 1024, 14 query heads per 2 KV heads). The tiny 1B keeps those traits: a language model
# narrower than the vision tower and 7 query heads per KV head, so a code path that assumed
# equal widths or the 2B's head layout would fail on it as on the real one.
TINY_VARIANTS = {
    "2b": {},
    "1b": {"text_hidden_size": 56, "text_heads": 7, "text_kv_heads": 1},
}

# Text the BPE is trained on: enough English and gloss-like words that every gloss of
# the shipped vocabulary splits into a few tokens, as with the real Qwen tokenizer.
_CORPUS_SEED = (
    "What sign is being performed in these frames? Answer with one word. "
    "Turn this sequence of sign glosses into one natural English sentence. "
    "Frame1 Frame2 Frame3 Frame4 Frame5 Frame6 Frame7 Frame8 Frame9 Frame10 "
    "the a an is are was be to of and in that have it for not on with he she you we they "
)


def build_tiny_model(
    folder: str | Path,
    *,
    extra_words: list[str] | None = None,
    vocab_size: int = 512,
    hidden_size: int = 64,
    text_hidden_size: int | None = None,
    text_heads: int = 4,
    text_kv_heads: int = 2,
    text_layers: int = 2,
    vision_layers: int = 1,
    image_size: int = 32,
    patch_size: int = 8,
    init_std: float = 0.2,
    seed: int = 0,
) -> Path:
    """Write a random-weight InternVL model + processor into `folder` (atomically).

    `extra_words` (e.g. a gloss vocabulary) are added to the tokenizer's training text
    so that they tokenize into short pieces. Widths default to multiples of 64 so that
    bitsandbytes 4-bit can quantize the linear layers, as on the real model. `init_std`
    is far above transformers' 0.02 so that outputs depend strongly on the input: with
    tiny near-zero weights every answer is almost uniform and tests could not tell a
    wrong attention mask from a right one. `text_hidden_size` (default: `hidden_size`) and
    the head counts shape the language model apart from the vision tower, as
    `TINY_VARIANTS` does for the 1B.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
        InternVLVisionConfig,
        Qwen2Config,
        Qwen2Tokenizer,
    )

    folder = Path(folder)
    words = " ".join(extra_words or [])
    corpus = [_CORPUS_SEED, words, words.upper(), words.capitalize()]

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    state = json.loads(bpe.to_str())
    vocab = state["model"]["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["model"]["merges"]]


    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS}, replace_extra_special_tokens=False)
    tokenizer.chat_template = CHAT_TEMPLATE

    image_seq_length = (image_size // patch_size) ** 2 // 4
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(
            hidden_size=hidden_size,
            num_hidden_layers=vision_layers,
            num_attention_heads=4,
            intermediate_size=hidden_size * 2,
            image_size=[image_size, image_size],
            patch_size=[patch_size, patch_size],
            use_absolute_position_embeddings=True,
            initializer_range=init_std,
        ),
        text_config=Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=text_hidden_size or hidden_size,
            intermediate_size=(text_hidden_size or hidden_size) * 2,
            num_hidden_layers=text_layers,
            num_attention_heads=text_heads,
            num_key_value_heads=text_kv_heads,
            max_position_embeddings=4096,
            tie_word_embeddings=True,
            initializer_range=init_std,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=image_seq_length,
        downsample_ratio=0.5,
        initializer_range=init_std,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    size = {"height": image_size, "width": image_size}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=False),
        video_processor=InternVLVideoProcessor(size=size),
        tokenizer=tokenizer,
        image_seq_length=image_seq_length,
        chat_template=CHAT_TEMPLATE,
    )

    # Written beside the target and renamed, so a crash never leaves a half model that
    # the test cache would trust.
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder
