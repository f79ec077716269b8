"""Real signing clips (WLASL and dictionary videos in ../shared, never committed) go through the engine.

Synthetic clips are encoded by our own writer; real downloads are not: their containers
declare frames that never decode (MP4 edit lists), carry odd tags and come in many sizes
and codecs. Each test fetches the folder with `shared_path`, which skips where
`../shared` is absent and fails under CI=true.
"""

from __future__ import annotations

import csv

import av
import numpy as np
import pytest

from conftest import shared_path
from engine.config import LimitsConfig
from engine.errors import ClipError
from engine.video import load_clip

LIMITS = LimitsConfig()


def isolated_clips() -> list[dict]:
    """The manifest's rows (one per isolated clip), each with its `path`."""
    root = shared_path("data", "real_clips")
    with open(root / "manifest.tsv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    for row in rows:
        row["path"] = root / row["file"]
    on_disk = sorted(root.glob("wlasl/*/*.mp4")) + sorted(root.glob("other/*/*.mp4"))
    assert sorted(row["path"] for row in rows) == sorted(on_disk), "manifest.tsv and the clips on disk differ"
    return rows


def declared_frames(path) -> int:
    with av.open(str(path), metadata_errors="replace") as container:
        return container.streams.video[0].frames


@pytest.mark.slow  # 232 real clips, at every profile
def test_every_isolated_clip_decodes_to_real_frames():
    from engine import load_config

    rows = isolated_clips()
    assert len(rows) == 232
    # Every profile the engine ships (tile size is the processor's business, frames are the decoder's).
    counts = sorted({profile.frames_per_clip for profile in load_config(env={}).profiles.values()})
    assert counts == [4, 8]
    failures = []
    for row in rows:
        frames, width, height = int(row["frames"]), int(row["width"]), int(row["height"])
        for count in counts:
            try:
                clip = load_clip(row["path"], num_frames=count, limits=LIMITS)
            except ClipError as error:
                failures.append(f"{row['file']} at {count} frames: {error}")
                continue
            problems = []
            if len(clip.frames) != count or clip.total_frames != frames:
                problems.append(f"{len(clip.frames)} frames of {clip.total_frames}, wanted {count} of {frames}")
            if max(clip.indices) >= frames:
                problems.append(f"index {max(clip.indices)} past the {frames} decodable frames")
            if any(f.shape != (height, width, 3) or f.dtype != np.uint8 for f in clip.frames):
                problems.append(f"frame shape {clip.frames[0].shape}, wanted {(height, width, 3)}")
            if any(f.min() == f.max() for f in clip.frames):
                problems.append("a constant frame")
            failures += [f"{row['file']} at {count} frames: {p}" for p in problems]
    assert not failures, "\n".join(failures)


def test_declared_but_undecodable_frames_are_never_sampled():
    # Sampling every frame proves that all decodable frames decode and that nothing past
    # them is asked for; the manifest's `frames` was counted by decoding.
    short = [row for row in isolated_clips() if declared_frames(row["path"]) > int(row["frames"])]
    assert len(short) >= 10  # many WLASL files are like this; the test must cover some
    for row in short:
        frames = int(row["frames"])
        clip = load_clip(row["path"], num_frames=frames, limits=LIMITS)
        assert clip.total_frames == frames and clip.indices == tuple(range(frames)), row["file"]
        assert not np.array_equal(clip.frames[-1], clip.frames[0]), row["file"]


def test_a_truncated_real_clip_is_refused_with_one_sentence(tmp_path):
    # An interrupted download of a clip whose index (moov) comes first: it still opens,
    # and also declares frames it cannot show, which must not hide the missing data.
    source = next(row["path"] for row in isolated_clips() if declared_frames(row["path"]) > int(row["frames"]))
    data = source.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "the test needs a clip whose index is written first"
    cut = tmp_path / source.name
    cut.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(ClipError) as error:
        load_clip(cut, num_frames=8, limits=LIMITS)
    text = str(error.value)
    assert "cut short" in text and source.name in text
    assert "\n" not in text and text.count(". ") == 0 and text.endswith(".")


@pytest.mark.slow
def test_the_tiny_engine_recognizes_every_isolated_clip(tiny_engine):
    glosses = set(tiny_engine.vocabulary.glosses)
    failures = []
    for row in isolated_clips():
        result = tiny_engine.recognize(row["path"])
        probabilities = [p.probability for p in result.top]
        if not result.top or not {p.gloss for p in result.top} <= glosses:
            failures.append(f"{row['file']}: ranking {[p.gloss for p in result.top]} not over the vocabulary")
        elif probabilities != sorted(probabilities, reverse=True) or not 0 < sum(probabilities) <= 1 + 1e-6:
            failures.append(f"{row['file']}: probabilities {probabilities}")
        elif len(result.clip.frames) != tiny_engine.profile.frames_per_clip:
            failures.append(f"{row['file']}: the model saw {len(result.clip.frames)} frames")
    assert not failures, "\n".join(failures)


MULTI_SIGNER = ("bed blue book chair computer doctor drink family go help how man mother need now school time want "
                "what who woman work year").split()


def test_every_wlasl_clip_imports_once(tmp_path):
    from training.curate.importer import import_videos
    from training.curate.plan import load_instances
    from training.layout import DataLayout

    folder = shared_path("data", "real_clips", "wlasl")
    layout = DataLayout.at(tmp_path / "data")
    report = import_videos(folder, layout, load_instances())
    wlasl_rows = [row for row in isolated_clips() if row["wlasl_video_id"]]
    assert sorted(report.imported) == sorted({row["wlasl_video_id"] for row in wlasl_rows})
    assert (report.unknown, report.duplicates, report.broken) == ([], [], [])
    again = import_videos(folder, layout, load_instances())
    assert again.imported == [] and len(again.present) == len(report.imported)


@pytest.mark.slow
def test_real_clips_import_build_finetune_evaluate(tmp_path, tiny_model_dir):
    """The whole loop on real signing: import -> signer-independent build -> a short fine-tune -> a report."""
    from conftest import tiny_config
    from training.curate.build import build_dataset
    from training.curate.importer import import_videos
    from training.curate.plan import load_instances
    from training.dataset import DatasetConfig, load_dataset
    from training.finetune.config import load_finetune_config
    from training.finetune.evaluate import evaluate
    from training.finetune.train import finetune
    from training.layout import DataLayout

    layout = DataLayout.at(tmp_path / "data")
    import_videos(shared_path("data", "real_clips", "wlasl"), layout, load_instances())
    glossary = tmp_path / "multi_signer.txt"
    glossary.write_text("\n".join(MULTI_SIGNER) + "\n")
    engine_config = tiny_config(tiny_model_dir)
    config = DatasetConfig(name="real", glossary=str(glossary), splits="signer", frames_per_clip=4,
                           include_user_clips=False, max_side=224)
    report = build_dataset(config, layout, engine_config=engine_config, show_progress=False)
    data = load_dataset("real", layout)
    assert report.rows == len(data.rows) >= 60 and report.skipped == ()
    signers = {split: {row["signer_id"] for row in data.split(split)} for split in ("train", "val", "test")}
    assert signers["test"] and not (signers["train"] & signers["test"])  # no signer in two splits
    run = finetune(load_finetune_config(overrides={"dataset": "real", "max_steps": 4, "batch_size": 2,
                                                   "grad_accumulation": 1, "save_strategy": "no"}),
                   engine_config, layout)
    assert (run.adapter / "adapter_model.safetensors").is_file()
    result = evaluate("real", engine_config, layout, adapter=str(run.adapter))
    assert [r["model"] for r in result["results"]] == ["base", "adapter"]
    assert result["results"][1]["clips"] == len(data.split("test")) and (run.path / "report.md").is_file()
