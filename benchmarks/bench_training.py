"""Training throughput on the tiny model, CPU: samples per second per LoRA step.

Side by side in one process, same PEFT model and optimizer, batch 4, the gesture
dataset of the tests (12-frame 64x64 clips, 4 frames sampled):
- lower bound: forward + backward + step on one prebuilt batch (no data work at all);
- ours: batches from `ClipCollator`, whose decoded frames are cached after first use;
- naive: the same collator decoding every clip again at every step (cache off).
Then one end-to-end `training.finetune` run (SFTTrainer, logging, checkpoint-free) for
the number a user sees.

    .venv/bin/python benchmarks/bench_training.py [--steps 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()

    import torch
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from conftest import tiny_config, tiny_model_folder
    from gestures import write_gesture_dataset
    from training.dataset import load_dataset
    from training.finetune.collator import ClipCollator
    from training.finetune.config import load_finetune_config
    from training.finetune.train import finetune, lora_config
    from training.layout import DataLayout

    torch.manual_seed(0)
    folder = tiny_model_folder()
    engine_config = tiny_config(folder)
    with tempfile.TemporaryDirectory() as scratch:
        data = write_gesture_dataset(Path(scratch) / "gestures", train_per_class=8, test_per_class=1)
        layout = DataLayout.at(Path(scratch) / "data")
        dataset = load_dataset(data, layout)
        rows = dataset.split("train")
        config = load_finetune_config(overrides={"dataset": str(data), "batch_size": args.batch})
        processor = AutoProcessor.from_pretrained(folder)
        model = get_peft_model(AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32), lora_config(config))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        prompt = engine_config.recognition.prompt
        cached = ClipCollator(processor, dataset, prompt)
        uncached = ClipCollator(processor, dataset, prompt, cache_mb=0)
        for start in range(0, len(rows), args.batch):
            cached(rows[start : start + args.batch])  # fill the cache, as epoch 1 does
        prebuilt = cached(rows[: args.batch])

        def step(batch) -> None:
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        variants = {
            "lower bound (prebuilt batch)": lambda i: step(prebuilt),
            "ours (collator, cached frames)": lambda i: step(cached(rows[i : i + args.batch])),
            "naive (decode every step)": lambda i: step(uncached(rows[i : i + args.batch])),
        }
        times = {name: [] for name in variants}
        for repeat in range(args.steps):
            offset = (repeat * args.batch) % (len(rows) - args.batch)
            for name, run in variants.items():  # interleaved: every variant sees the same load
                started = time.perf_counter()
                run(offset)
                times[name].append(time.perf_counter() - started)

        run_config = load_finetune_config(overrides={
            "dataset": str(data), "output_dir": scratch, "run_name": "bench", "max_steps": args.steps * 2,
            "batch_size": args.batch, "grad_accumulation": 1, "save_strategy": "no", "logging_steps": 5,
        })
        import json

        run = finetune(run_config, engine_config, layout)
        end_to_end = json.loads((run.adapter / "metrics.json").read_text())["samples_per_second"]

    ours = statistics.median(times["ours (collator, cached frames)"])
    print(f"\nTiny InternVL, LoRA (r={config.lora_r}, language model projections), CPU, batch {args.batch}, median of {args.steps} steps")
    print("| variant | s/step | samples/s | vs ours |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {args.batch / median:.1f} | {ours / median:.2f}x |")
    print(f"| end to end: python -m training.finetune (SFTTrainer) | - | {end_to_end:.1f} | - |")


if __name__ == "__main__":
    main()
