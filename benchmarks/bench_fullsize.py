"""Seconds per clip for the full-size InternVL3-2B architecture, per precision option.

No download: the model is built from InternVL3-2B-hf's real configuration (InternViT-300M
vision tower, Qwen2.5-1.5B language model, 256 tokens per 448 px frame; 2.09 B params)
with random weights, which cost the same to run as trained ones. Each option runs in its
own process so its peak memory (ru_maxrss) is its own. One clip = what `recognize` does
in score mode: one prefill of prompt + frames, then the shared tree pass over all 320
glosses of the shipped vocabulary.

    .venv/bin/python benchmarks/bench_fullsize.py                       # CPU, all options
    .venv/bin/python benchmarks/bench_fullsize.py --options fp32 int8 --frames 4
    .venv/bin/python benchmarks/bench_fullsize.py --device cuda --options bf16 nf4   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OPTIONS = ("fp32", "bf16", "int8", "nf4")


def full_size_config(image_token_id: int):
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

    # Values from OpenGVLab/InternVL3-2B-hf config.json.
    vision = InternVLVisionConfig(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        image_size=[448, 448], patch_size=[14, 14], use_qk_norm=False, layer_scale_init_value=0.1,
        norm_type="layer_norm", use_absolute_position_embeddings=True, attention_bias=True,
    )
    text = Qwen2Config(
        vocab_size=151674, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
        rope_theta=1000000.0, tie_word_embeddings=True, rms_norm_eps=1e-6,
    )
    return InternVLConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                          image_seq_length=256, downsample_ratio=0.5, projector_hidden_act="gelu")


def build_folder(folder: Path) -> Path:
    """Save the random full-size model (bf16, like the real checkpoint) + a 448 px processor."""
    import torch
    from transformers import GotOcr2ImageProcessor, InternVLForConditionalGeneration, InternVLProcessor, InternVLVideoProcessor
    from transformers.initialization import no_init_weights

    from engine.tiny import build_tiny_model
    from engine.vocabulary import DEFAULT_VOCABULARY, load_vocabulary

    if (folder / "config.json").is_file():
        return folder
    with tempfile.TemporaryDirectory() as scratch:
        glosses = list(load_vocabulary(DEFAULT_VOCABULARY).glosses)
        tiny = InternVLProcessor.from_pretrained(build_tiny_model(Path(scratch) / "tok", extra_words=glosses))
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size={"height": 448, "width": 448}, crop_to_patches=False),
        video_processor=InternVLVideoProcessor(size={"height": 448, "width": 448}),
        tokenizer=tiny.tokenizer, image_seq_length=256, chat_template=tiny.chat_template,
    )
    config = full_size_config(processor.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"))
    config.text_config.eos_token_id = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    with no_init_weights():
        model = InternVLForConditionalGeneration(config)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for parameter in model.parameters():
            parameter.normal_(0, 0.02, generator=generator)
    model.to(torch.bfloat16).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# option -> engine model settings; everything else is the shipped config.
SETTINGS = {
    "fp32": {"dtype": "float32", "quantization": "none"},
    "bf16": {"dtype": "bfloat16", "quantization": "none"},
    "int8": {"dtype": "float32", "quantization": "8bit"},
    "nf4": {"dtype": "auto", "quantization": "4bit"},
}


def run_option(option: str, frames_list: list[int], device: str, folder: str) -> dict:
    """Load through the engine exactly as the app does, then time `recognize` per clip."""
    import numpy as np
    import torch

    from engine import Engine, load_config

    row: dict = {"option": option}
    for frames in frames_list:
        overrides = {"model": {"id": folder, "device": device, **SETTINGS[option]}, "video": {"frames_per_clip": frames}}
        engine = Engine(load_config(env={}, overrides=overrides)).start()
        status = engine.status()
        row.update(weights_gb=status.memory_mb / 1024, load_s=status.load_seconds, dtype=status.dtype)
        clip = [np.random.default_rng(i).integers(0, 255, (480, 640, 3), dtype=np.uint8) for i in range(frames * 4)]
        if device == "cuda":
            engine.recognize(clip)  # warm-up: CUDA kernels and allocator
            torch.cuda.reset_peak_memory_stats()
        result = engine.recognize(clip)
        if device == "cuda":
            row[f"vram_peak_gb_{frames}f"] = torch.cuda.max_memory_allocated() / 2**30
        row[f"s_per_clip_{frames}f"] = result.timings.total_ms / 1000
        engine.close()
    row["rss_peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=OPTIONS)
    parser.add_argument("--frames", nargs="+", type=int, default=[4, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per option")
    parser.add_argument("--folder", default=str(ROOT / ".cache" / "internvl3-2b-random"), help="where the random model is saved (reused)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_option(args.worker, args.frames, args.device, args.folder)))
        return

    started = time.perf_counter()
    folder = build_folder(Path(args.folder))
    print(f"model folder ready in {time.perf_counter() - started:.0f} s: {folder}", file=sys.stderr)
    rows = []
    for option in args.options:
        command = [sys.executable, __file__, "--worker", option, "--device", args.device, "--folder", str(folder), "--frames", *map(str, args.frames)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
            error = (done.stderr.strip().splitlines() or ["no output"])[-1][:160]
            rows.append(json.loads(line) if line.startswith("{") else {"option": option, "error": error})
        except subprocess.TimeoutExpired:
            rows.append({"option": option, "error": f"over {args.timeout} s"})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print_table(rows, args.frames, args.device)


def print_table(rows: list[dict], frames_list: list[int], device: str) -> None:
    base = next((r for r in rows if r.get("option") == "fp32" and "error" not in r), None)
    header = ["option", "dtype", "weights GB", "peak RSS GB"] + [f"s/clip {f}f" for f in frames_list] + [f"vs fp32 {f}f" for f in frames_list]
    if device == "cuda":
        header += [f"VRAM peak {f}f" for f in frames_list]
    print(f"\nFull-size InternVL3-2B architecture (random weights), {device}, 320-gloss scoring per clip")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        if "error" in row:
            print(f"| {row['option']} | failed: {row['error']} |")
            continue
        cells = [row["option"], row["dtype"], f"{row['weights_gb']:.2f}", f"{row['rss_peak_gb']:.1f}"]
        cells += [f"{row[f's_per_clip_{f}f']:.1f}" for f in frames_list]
        cells += [f"{row[f's_per_clip_{f}f'] / base[f's_per_clip_{f}f']:.2f}x" if base else "-" for f in frames_list]
        if device == "cuda":
            cells += [f"{row.get(f'vram_peak_gb_{f}f', 0):.2f}" for f in frames_list]
        print("| " + " | ".join(cells) + " |")
    print("One clip = decode + preprocess + one prefill (~260 tokens per frame) + the tree pass over 320 glosses.")


if __name__ == "__main__":
    main()
