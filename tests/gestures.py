"""A generated "gesture" dataset: classes that differ only in how a square moves.

Colour, background and start jitter are random per clip and shared by all classes, so
only the motion (path and direction) tells the classes apart. Written in the layout
training.dataset builds (dataset.jsonl + clips/ + config.json) so fine-tuning and
evaluation read it through their real code paths.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from media import write_video

CLASSES = ("left", "right", "up", "down", "circle")
SIZE, SQUARE, FRAMES = 64, 20, 12


def _position(name: str, t: float) -> tuple[float, float]:
    low, high = 4.0, SIZE - SQUARE - 4.0
    if name == "right":
        return low + (high - low) * t, (low + high) / 2
    if name == "left":
        return high - (high - low) * t, (low + high) / 2
    if name == "down":
        return (low + high) / 2, low + (high - low) * t
    if name == "up":
        return (low + high) / 2, high - (high - low) * t
    angle = 2 * np.pi * t  # circle, clockwise on screen from the top
    centre, radius = (low + high) / 2, (high - low) / 2
    return centre + radius * np.sin(angle), centre - radius * np.cos(angle)


def gesture_frames(name: str, rng: np.random.Generator) -> list[np.ndarray]:
    colour = rng.integers(80, 256, 3)
    background = int(rng.integers(0, 60))
    jitter = rng.uniform(-3, 3, 2)
    frames = []
    for i in range(FRAMES):
        x, y = np.clip(np.array(_position(name, i / (FRAMES - 1))) + jitter, 0, SIZE - SQUARE).astype(int)
        frame = np.full((SIZE, SIZE, 3), background, np.uint8)
        frame[y : y + SQUARE, x : x + SQUARE] = colour
        frames.append(frame)
    return frames


def write_gesture_dataset(folder: Path, *, train_per_class: int, test_per_class: int, frames_per_clip: int = 4, seed: int = 0) -> Path:
    from training.dataset import DatasetConfig

    rng = np.random.default_rng(seed)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name in CLASSES:
            for i in range(count):
                clip = f"clips/{split}_{name}_{i}.mp4"
                write_video(folder / clip, gesture_frames(name, rng), codec="libx264", gop=12)
                rows.append({"clip": clip, "gloss": name, "split": split, "signer_id": i, "source": "generated",
                             "video_id": f"{split}_{name}_{i}", "frame_start": 1, "frame_end": -1, "bbox": None})
    config = DatasetConfig(name=folder.name, glossary="", frames_per_clip=frames_per_clip, include_user_clips=False)
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(config)))
    (folder / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder
