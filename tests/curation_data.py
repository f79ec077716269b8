"""A small fake WLASL for the curation tests: real instance records, generated videos.

Six real WLASL100 records (real video ids, glosses, signers, sources, splits) with their
spans and boxes changed to fit small generated clips: each frame is 96x64, its left
64x64 square shows the frame index (tests/media.py) and the right part is grey, so a
crop to the box (0, 0, 64, 64) keeps the index readable and a missing crop shows.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from media import index_frame, write_video
from training.curate import wlasl
from training.layout import DataLayout

BBOX = (0, 0, 64, 64)
# video_id -> (frames in the file or None = not downloaded, frame_start, frame_end)
LAYOUT = {
    "69241": (12, 1, -1),   # book, train: whole file
    "65225": (20, 3, 9),    # book, train: a span inside (gop 4: decoding seeks)
    "69302": (12, 1, 50),   # drink, val: frame_end past the end is clamped
    "65539": (10, 15, 20),  # drink, train: starts after the end -> skipped with a reason
    "12306": (40, 5, -1),   # computer, test: longer than one decode chunk (32)
    "68028": (None, 1, -1),  # computer, train: not downloaded
}
# 0-based source frames each built clip must hold.
EXPECTED = {"69241": list(range(0, 12)), "65225": list(range(2, 9)), "69302": list(range(0, 12)),
            "12306": list(range(4, 40))}


def frame(index: int) -> np.ndarray:
    out = np.full((64, 96, 3), 128, dtype=np.uint8)
    out[:, :64] = index_frame(index, 64, 64)
    return out


def make_fake_wlasl(folder: Path, data_root: Path, *, url_base: str | None = None) -> tuple[Path, list[wlasl.WlaslInstance]]:
    """Write the metadata JSON (returned) and the videos as if downloaded under ``data_root``.

    With ``url_base`` the URLs point there (``<url_base>/<video_id>.mp4``) and the videos
    go to ``folder/served/`` instead, for a local server to hand to the downloader.
    """
    real = {inst.video_id: inst for inst in wlasl.load_wlasl() if inst.video_id in LAYOUT}
    instances = []
    videos = folder / "served" if url_base else DataLayout.at(data_root).videos
    videos.mkdir(parents=True, exist_ok=True)
    for video_id, (frames, start, end) in LAYOUT.items():
        inst = dataclasses.replace(real[video_id], frame_start=start, frame_end=end, bbox=BBOX)
        if url_base:
            inst = dataclasses.replace(inst, url=f"{url_base}/{inst.filename}")
        instances.append(inst)
        if frames is not None:
            write_video(videos / inst.filename, [frame(i) for i in range(frames)], fps=25, gop=4)
    entries: dict[str, list] = {}
    for inst in instances:
        raw = dataclasses.asdict(inst)
        raw["bbox"] = list(inst.bbox)
        entries.setdefault(raw.pop("gloss"), []).append(raw)
    metadata = folder / "wlasl_small.json"
    metadata.write_text(json.dumps([{"gloss": g, "instances": i} for g, i in entries.items()]))
    return metadata, instances
