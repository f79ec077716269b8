"""Seconds per clip on CPU for the full-size models, per input profile, quantization and model.

No download: InternVL3-2B-hf and InternVL3-1B-hf are built from their real configurations
(InternViT-300M vision tower; Qwen2.5-1.5B or Qwen2.5-0.5B language model; 2.09 B and
0.94 B params) with random weights, which cost the same to run as trained ones. Each row
runs in its own process so its peak memory (ru_maxrss, loading included) is its own. One
clip = what `recognize` does in score mode: decode, preprocess, one prefill of prompt +
frames, then the candidate pass over the 320 glosses of the shipped vocabulary.

The reference is today's default before this work: `quality` profile (8 frames, 448 px),
fp32, 2B, every gloss scored (no pruned ranking). Every other row uses pruned ranking,
the shipped default.

    .venv/bin/python benchmarks/bench_fullsize.py                          # every row, 2 threads
    .venv/bin/python benchmarks/bench_fullsize.py --rows 2b:fast:fp32 1b:fast:int8
    .venv/bin/python benchmarks/bench_fullsize.py --device cuda --rows 2b:quality:nf4 2b:fast:nf4 2b:fast:nf4:train

A row ending in `:train` times one LoRA fine-tuning step instead (QLoRA with nf4 on CUDA:
batch 1, the shipped fine-tuning settings, the collator's inputs); benchmarks/gpu_check.sh
runs those on a GPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# quantization option -> engine model settings; everything else is the shipped config.
SETTINGS = {
    "fp32": {"dtype": "float32", "quantization": "none"},
    "bf16": {"dtype": "bfloat16", "quantization": "none"},
    # torch dynamic int8 on the language model (the engine's CPU `8bit`)
    "int8": {"dtype": "float32", "quantization": "8bit"},
    # the same, plus the vision tower (`quantize_vision: true`)
    "int8v": {"dtype": "float32", "quantization": "8bit", "quantize_vision": True},
    "nf4": {"dtype": "auto", "quantization": "4bit"},
}
# model:profile:quantization[:all|:train] (all = no pruned ranking, train = one LoRA step);
# the first row is the reference.
REFERENCE = "2b:quality:fp32:all"
ROWS = (REFERENCE, "2b:quality:fp32", "2b:fast:fp32", "2b:fast:int8", "2b:fast:int8v",
        "1b:quality:fp32", "1b:fast:fp32", "1b:fast:int8", "1b:fast:int8v")
# A row whose clip takes longer than this is timed once: the ratios are far from the noise.
REPEAT_BELOW_S = 60.0

# Values from the published config.json of each model (language model; the vision tower,
# InternViT-300M at 448 px with 14 px patches, is the same in both).
TEXT_CONFIGS = {
    "2b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2),
    "1b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2),
}
MODEL_NAMES = {"2b": "InternVL3-2B", "1b": "InternVL3-1B"}


def full_size_config(model: str, image_token_id: int):
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

    vision = InternVLVisionConfig(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        image_size=[448, 448], patch_size=[14, 14], use_qk_norm=False, layer_scale_init_value=0.1,
        norm_type="layer_norm", use_absolute_position_embeddings=True, attention_bias=True,
    )
    text = Qwen2Config(
        vocab_size=151674, max_position_embeddings=32768, rope_theta=1000000.0, tie_word_embeddings=True,
        rms_norm_eps=1e-6, **TEXT_CONFIGS[model],
    )
    return InternVLConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                          image_seq_length=256, downsample_ratio=0.5, projector_hidden_act="gelu")


def build_folder(model: str, folder: Path) -> Path:
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
    config = full_size_config(model, processor.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"))
    config.text_config.eos_token_id = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    with no_init_weights():
        network = InternVLForConditionalGeneration(config)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for parameter in network.parameters():
            parameter.normal_(0, 0.02, generator=generator)
    network.to(torch.bfloat16).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def run_row(row: str, device: str, folder: str, repeats: int) -> dict:
    """Load through the engine exactly as the app does, then time `recognize` per clip."""
    import numpy as np
    import torch

    from engine import Engine, load_config

    model, profile, option, *rest = row.split(":")
    overrides = {
        "model": {"id": folder, "device": device, **SETTINGS[option]},
        "video": {"profile": profile},
        "recognition": {"pruned_ranking": rest != ["all"]},
    }
    engine = Engine(load_config(env={}, overrides=overrides)).start()
    status = engine.status()
    result: dict = {"row": row, "weights_gb": status.memory_mb / 1024, "load_s": status.load_seconds,
                    "frames": status.frames_per_clip, "tile_px": status.tile_px}
    clip = [np.random.default_rng(i).integers(0, 255, (480, 640, 3), dtype=np.uint8) for i in range(32)]
    if device == "cuda":
        engine.recognize(clip)  # warm-up: CUDA kernels and allocator
        torch.cuda.reset_peak_memory_stats()
    seconds, cpu = [], []
    for _ in range(repeats):
        started = time.process_time()
        seconds.append(engine.recognize(clip).timings.total_ms / 1000)
        cpu.append(time.process_time() - started)
        if seconds[-1] > REPEAT_BELOW_S:
            break
    result.update(s_per_clip=statistics.median(seconds), cpu_s_per_clip=statistics.median(cpu), runs=len(seconds),
                  prompt_tokens=_prompt_tokens(engine, clip))
    if device == "cuda":
        result["vram_peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    engine.close()
    result["rss_peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def run_train_row(row: str, device: str, folder: str, repeats: int) -> dict:
    """One LoRA step as training.finetune takes it: the same load (QLoRA on CUDA), LoRA
    targets, collator and profile tile; the first step (allocator, kernels) is not timed."""
    from types import SimpleNamespace

    import numpy as np
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    from engine import frame_tile, load_config, load_model, sized_processor
    from training.finetune.collator import ClipCollator
    from training.finetune.config import load_finetune_config
    from training.finetune.train import base_model_config, lora_config

    model, profile, option, _ = row.split(":")
    engine_config = load_config(env={}, overrides={"model": {"id": folder, "device": device, **SETTINGS[option]},
                                                   "video": {"profile": profile}})
    config = load_finetune_config(overrides={"quantization": "4bit" if option == "nf4" else "none"})
    loaded = load_model(base_model_config(engine_config, config))
    network = loaded.model
    if loaded.quantization == "4bit":
        network = prepare_model_for_kbit_training(network, use_gradient_checkpointing=False)
    network = get_peft_model(network, lora_config(config))
    chosen = engine_config.input_profile()
    tile = frame_tile(network.config, chosen.image_scale)
    clip = [np.random.default_rng(i).integers(0, 255, (tile.pixels, tile.pixels, 3), dtype=np.uint8) for i in range(chosen.frames_per_clip)]
    dataset = SimpleNamespace(frames=lambda row: SimpleNamespace(frames=clip))
    collator = ClipCollator(sized_processor(loaded.processor, tile), dataset, engine_config.recognition.prompt,
                            pixel_dtype=loaded.device.dtype)
    batch = {k: v.to(loaded.device.torch_device) for k, v in collator([{"clip": "x", "gloss": "drink"}]).items()}
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=config.learning_rate)
    seconds, cpu = [], []
    for step in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
            if step == 1:
                torch.cuda.reset_peak_memory_stats()
        started, started_cpu = time.perf_counter(), time.process_time()
        network(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        if step:
            seconds.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
    result = {"row": row, "weights_gb": loaded.memory_bytes / 2**30, "load_s": loaded.load_seconds,
              "frames": chosen.frames_per_clip, "tile_px": tile.pixels, "prompt_tokens": int(batch["input_ids"].shape[1]),
              "s_per_clip": statistics.median(seconds), "cpu_s_per_clip": statistics.median(cpu), "runs": len(seconds)}
    if device == "cuda":
        result["vram_peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    result["rss_peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def _prompt_tokens(engine, clip) -> int:
    """Tokens of the prefill (prompt + image placeholders): what the profile changes most."""
    from engine import load_clip

    sampled = load_clip(clip, num_frames=engine.profile.frames_per_clip, limits=engine.config.limits)
    return int(engine._model_inputs(engine._require_model(), sampled)["input_ids"].shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), help="model:profile:quantization[:all]")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per row (the project's machines have 2 cores)")
    parser.add_argument("--repeats", type=int, default=2, help=f"timed clips per row (one when a clip takes over {REPEAT_BELOW_S:.0f} s)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per row")
    parser.add_argument("--cache", default=str(ROOT / ".cache"), help="where the random models are saved (reused)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        run = run_train_row if args.worker.endswith(":train") else run_row
        print(json.dumps(run(args.worker, args.device, args.folder, args.repeats)))
        return

    for row in args.rows:
        model, profile, option, *rest = (row.split(":") + [""])[:4]
        if model not in TEXT_CONFIGS or option not in SETTINGS or rest not in ([""], ["all"], ["train"]):
            parser.error(f"row {row!r}: expected model:profile:quantization[:all|:train] with model in {', '.join(TEXT_CONFIGS)} "
                         f"and quantization in {', '.join(SETTINGS)}")
    started = time.perf_counter()
    folders = {m: build_folder(m, Path(args.cache) / f"internvl3-{m}-random") for m in sorted({r.split(':')[0] for r in args.rows})}
    print(f"model folders ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    results = []
    for row in args.rows:
        command = [sys.executable, __file__, "--worker", row, "--device", args.device, "--folder", str(folders[row.split(":")[0]]),
                   "--threads", str(args.threads), "--repeats", str(args.repeats)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
            error = (done.stderr.strip().splitlines() or ["no output"])[-1][:160]
            results.append(json.loads(line) if line.startswith("{") else {"row": row, "error": error})
        except subprocess.TimeoutExpired:
            results.append({"row": row, "error": f"over {args.timeout} s"})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print_table(results, args.device, args.threads)


def print_table(results: list[dict], device: str, threads: int) -> None:
    reference = next((r for r in results if r["row"] == REFERENCE and "error" not in r), None)
    header = ["model", "profile", "quantization", "ranking", "frames x px", "prompt tokens", "weights GB",
              "peak RSS GB", "s/clip", "CPU s/clip", "runs", "vs reference (wall)", "vs reference (CPU)"]
    if device == "cuda":
        header.append("VRAM peak GB")
    print(f"\nFull-size architectures (random weights), {device}, {threads} threads, 320-gloss scoring per clip")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        model, profile, option, *rest = r["row"].split(":")
        ranking = {"all": "all glosses", "train": "LoRA step"}.get(rest[0] if rest else "", "pruned")
        if "error" in r:
            print(f"| {MODEL_NAMES[model]} | {profile} | {option} | {ranking} | failed: {r['error']} |")
            continue
        ratios = [f"1/{reference[key] / r[key]:.1f}" if reference else "-" for key in ("s_per_clip", "cpu_s_per_clip")]
        cells = [MODEL_NAMES[model], profile, option, ranking, f"{r['frames']} x {r['tile_px']}", str(r["prompt_tokens"]),
                 f"{r['weights_gb']:.2f}", f"{r['rss_peak_gb']:.1f}", f"{r['s_per_clip']:.1f}", f"{r['cpu_s_per_clip']:.1f}", str(r["runs"]), *ratios]
        if device == "cuda":
            cells.append(f"{r.get('vram_peak_gb', 0):.2f}")
        print("| " + " | ".join(cells) + " |")
    print("One clip = decode + preprocess + one prefill + the candidate pass over 320 glosses (a LoRA step row: "
          "forward + backward + optimizer step on one clip); s/clip (wall) and CPU s/clip (all threads) are "
          "medians of the runs; vs reference = this row's seconds as a share of the reference's, in wall and in "
          "CPU time (CPU time moves less when other jobs share the cores).")


if __name__ == "__main__":
    main()
