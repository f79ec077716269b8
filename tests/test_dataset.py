"""The dataset builder on generated clips: exact spans, crops, rows, atomicity, user clips."""

from __future__ import annotations

import json
import os
import threading
import zipfile

import av
import pytest

from curation_data import BBOX, EXPECTED, frame, make_fake_wlasl
from media import read_index, write_video
from training import dataset
from training.curate import build, clipcache, edits, stats, userdata
from training.curate.plan import plan_dataset
from training.curate.build import build_dataset
from training.dataset import DatasetConfig, load_dataset
from training.errors import BuildCancelled, DatasetError
from training.layout import DataLayout


@pytest.fixture(scope="module")
def engine_config():
    from engine.config import load_config

    return load_config(env={})


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wlasl")
    metadata, instances = make_fake_wlasl(folder, folder / "data")
    return DataLayout.at(folder / "data"), metadata


def config(metadata, **values) -> DatasetConfig:
    return DatasetConfig(**{"name": "small", "metadata": str(metadata), "subset": "WLASL100", **values})


@pytest.fixture(scope="module")
def built(fake, engine_config):
    layout, metadata = fake
    report = build_dataset(config(metadata), layout, engine_config=engine_config, show_progress=False)
    return layout, metadata, report


def decode_all(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_clips_hold_exactly_the_span_cropped(built):
    layout, _, report = built
    data = load_dataset("small", layout)
    assert {row["video_id"] for row in data.rows} == set(EXPECTED)
    for row in data.rows:
        frames = decode_all(data.clip_path(row))
        assert [read_index(f) for f in frames] == EXPECTED[row["video_id"]]
        assert frames[0].shape == (64, 64, 3)  # the 96x64 source cropped to the 64x64 box
        assert row["frames"] == len(frames) and row["fps"] == 25.0


def test_rows_config_stats_and_report(built, engine_config):
    layout, metadata, report = built
    folder = layout.datasets / "small"
    rows = [json.loads(line) for line in (folder / "dataset.jsonl").read_text().splitlines()]
    book = next(r for r in rows if r["video_id"] == "65225")
    assert {k: book[k] for k in ("clip", "gloss", "split", "signer_id", "source", "frame_start", "frame_end", "bbox")} == {
        "clip": "clips/65225.mp4", "gloss": "book", "split": "train", "signer_id": 90, "source": "aslsignbank",
        "frame_start": 3, "frame_end": 9, "bbox": list(BBOX)}
    saved = json.loads((folder / "config.json").read_text())
    assert saved["dataset"]["frames_per_clip"] == engine_config.input_profile().frames_per_clip  # resolved from the engine
    assert dataset.load_dataset_config(folder / "config.json") == config(metadata).resolved(engine_config)
    assert (report.rows, report.missing, [r for r, _ in report.skipped]) == (4, 1, ["wlasl:65539"])
    assert "starts at frame 15" in report.skipped[0][1]
    counts = json.loads((folder / "stats.json").read_text())
    assert counts["by_split"] == {"train": 2, "val": 1, "test": 1}
    assert counts["build"]["skipped"][0]["ref"] == "wlasl:65539"
    assert (folder / "stats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "WLASL-LICENCE-C-UDA-1.0.pdf").is_file()
    assert not [p for p in (layout.datasets).iterdir() if p.name.startswith(".")]


def test_training_samples_the_frames_inference_would(built, engine_config):
    """One code path: sampling the stored clip == the engine sampling the original span."""
    from engine.video import load_clip

    layout, _, _ = built
    data = load_dataset("small", layout)
    for row in data.rows:
        source = layout.videos / f"{row['video_id']}.mp4"
        original = load_clip(source, num_frames=8, limits=engine_config.limits, frame_start=row["frame_start"],
                             frame_end=row["frame_end"], bbox=row["bbox"])
        stored = data.frames(row)
        assert [read_index(f) for f in stored.frames] == [read_index(f) for f in original.frames]


def test_rebuild_reuses_the_cache_and_replaces_the_old_dataset(built, engine_config):
    layout, metadata, _ = built
    report = build_dataset(config(metadata), layout, engine_config=engine_config, show_progress=False)
    assert (report.cached, report.encoded) == (4, 0)
    clip = layout.datasets / "small" / "clips" / "69241.mp4"
    assert clip.stat().st_nlink >= 2  # hard link into the cache, not a copy
    assert oct(clip.stat().st_mode & 0o777) == "0o644"


def test_long_side_is_capped(fake, engine_config, tmp_path):
    layout, metadata = fake
    clip = tmp_path / "out.mp4"
    info = clipcache.prepare_clip(layout.videos / "69241.mp4", clip, bbox=None, max_side=48)
    assert (info.width, info.height, info.frames) == (48, 32, 12)
    assert decode_all(clip)[0].shape == (32, 48, 3)


def test_failure_mid_build_leaves_the_previous_dataset(built, engine_config, monkeypatch):
    layout, metadata, _ = built
    folder = layout.datasets / "small"
    before = (folder / "dataset.jsonl").read_text()
    calls = []
    real = build.cached_clip

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "cached_clip", flaky)
    with pytest.raises(OSError, match="disk full"):
        build_dataset(config(metadata, workers=1), layout, engine_config=engine_config, show_progress=False)
    with pytest.raises(OSError, match="disk full"):
        calls.clear()
        build_dataset(config(metadata, name="fresh", workers=1), layout, engine_config=engine_config,
                      show_progress=False)
    assert (folder / "dataset.jsonl").read_text() == before
    assert sorted(p.name for p in (layout.datasets).iterdir()) == ["small"]  # no "fresh", no temp dirs


def test_leftovers_of_a_killed_build_are_cleaned_up(tmp_path):
    datasets = tmp_path / "datasets"
    (datasets / ".small.building-999999999-x1").mkdir(parents=True)  # no such pid: a dead build
    (datasets / ".small.old-999999999-5").mkdir()  # moved aside, never replaced: put back
    (datasets / ".small.old-999999999-5" / "dataset.jsonl").write_text("{}\n")
    (datasets / f".small.building-{os.getpid()}-x2").mkdir()  # a live build (this process): kept
    build._remove_leftovers(datasets / "small")
    assert sorted(p.name for p in datasets.iterdir()) == [f".small.building-{os.getpid()}-x2", "small"]
    assert (datasets / "small" / "dataset.jsonl").read_text() == "{}\n"


def test_cancel_writes_nothing(built, engine_config):
    layout, metadata, _ = built
    cancel = threading.Event()
    with pytest.raises(BuildCancelled):
        build_dataset(config(metadata, name="stopped", workers=1), layout, engine_config=engine_config,
                      progress=lambda done, total: done >= 1 and cancel.set(), cancel=cancel, show_progress=False)
    assert not (layout.datasets / "stopped").exists()
    assert sorted(p.name for p in (layout.datasets).iterdir()) == ["small"]


def test_user_clips_follow_their_status(tmp_path, fake, engine_config):
    _, metadata = fake
    root = DataLayout.at(tmp_path / "data")
    recording = write_video(tmp_path / "rec.mp4", [frame(i) for i in range(9)], fps=30)
    accepted = userdata.add_clip(root, recording, "book", source="curate")
    userdata.update_clip(root, accepted.id, status="accepted")
    pending = userdata.add_clip(root, recording, "drink", source="upload", predicted="book", confidence=0.4)
    excluded = userdata.add_clip(root, recording, "computer", source="live")
    userdata.update_clip(root, excluded.id, status="excluded")
    outside = userdata.add_clip(root, recording, "zebra-not-in-glossary", source="upload")
    userdata.update_clip(root, outside.id, status="accepted")

    def built_ids(**values):
        report = build_dataset(config(metadata, **values), root, engine_config=engine_config, show_progress=False)
        return {row["video_id"]: row for row in load_dataset(report.folder, root).rows}

    rows = built_ids()
    assert set(rows) == {f"user-{accepted.id}"}  # no WLASL videos here: only the user's clips
    row = rows[f"user-{accepted.id}"]
    assert (row["source"], row["split"], row["signer_id"], row["origin"], row["frames"]) == ("user", "train", -1, "curate", 9)
    assert (row["width"], row["height"]) == (96, 64)  # no box: kept whole
    assert set(built_ids(name="both", user_statuses=("pending", "accepted"))) == {
        f"user-{accepted.id}", f"user-{pending.id}"}
    with pytest.raises(DatasetError, match="none is downloaded"):
        build_dataset(config(metadata, include_user_clips=False), root, engine_config=engine_config, show_progress=False)
    notes = {c.ref: c.note for c in plan_dataset(config(metadata), root).clips}
    assert notes[f"user:{outside.id}"] == "its gloss is not in the glossary"
    assert notes[f"user:{excluded.id}"] == "excluded by a curator"


def test_wlasl_edits_relabel_exclude_restore(tmp_path, fake):
    _, metadata = fake
    root = DataLayout.at(tmp_path / "data")
    edits.set_edit(root, "69241", original_gloss="book", gloss="drink")
    edits.set_edit(root, "65225", original_gloss="book", excluded=True)
    plan = {c.video_id: c for c in plan_dataset(config(metadata), root).clips}
    assert (plan["69241"].gloss, plan["69241"].original_gloss) == ("drink", "book")
    assert (plan["65225"].status, plan["65225"].included) == ("excluded", False)
    edits.set_edit(root, "69241", original_gloss="book", gloss="book")
    edits.set_edit(root, "65225", original_gloss="book", excluded=False)
    assert edits.read_edits(root) == {}  # back to WLASL: nothing stored
    with pytest.raises(ValueError):
        edits.set_edit(root, "../../etc/passwd", original_gloss="x", excluded=True)


def test_signer_split_and_cap_on_the_real_metadata(tmp_path):
    plan = plan_dataset(DatasetConfig(subset="WLASL100", splits="signer", seed=3), DataLayout.at(tmp_path))
    splits_of = {}
    for clip in plan.included():
        splits_of.setdefault(clip.signer_id, set()).add(clip.split)
    assert all(len(s) == 1 for s in splits_of.values())
    capped = plan_dataset(DatasetConfig(subset="WLASL100", max_clips_per_gloss=2), DataLayout.at(tmp_path))
    per_key = {}
    for clip in capped.included():
        per_key[(clip.gloss, clip.split)] = per_key.get((clip.gloss, clip.split), 0) + 1
    assert max(per_key.values()) == 2
    assert any(c.note == "over max_clips_per_gloss=2" for c in capped.clips)


def test_config_yaml_overrides_and_validation(tmp_path):
    default = dataset.load_dataset_config()
    assert default == DatasetConfig()  # the shipped YAML states the defaults
    path = tmp_path / "d.yml"
    path.write_text("name: mine\nsources: [aslpro, handspeak]\nsplits: signer\n")
    loaded = dataset.load_dataset_config(path, overrides={"seed": "7", "user_statuses": "pending,accepted"})
    assert (loaded.name, loaded.sources, loaded.splits, loaded.seed, loaded.user_statuses) == (
        "mine", ("aslpro", "handspeak"), "signer", 7, ("pending", "accepted"))
    path.write_text("name: mine\nglosary: x.txt\n")
    with pytest.raises(DatasetError, match="unknown key.*glosary"):
        dataset.load_dataset_config(path)
    with pytest.raises(DatasetError, match=r"^splits must be official or signer, not 'random'; user_statuses may "
                       r"hold pending and accepted, not \['excluded'\]\.$"):
        DatasetConfig(splits="random", user_statuses=("excluded",))
    with pytest.raises(DatasetError, match=r"^The dataset name '\.\./escape' is not valid: use letters"):
        DatasetConfig(name="../escape")


def test_paths_never_leave_the_layout(tmp_path, fake, engine_config):
    _, metadata = fake
    root = DataLayout.at(tmp_path / "data")
    videos = root.videos
    videos.mkdir(parents=True)
    outside = write_video(tmp_path / "outside.mp4", [frame(i) for i in range(12)])
    os.symlink(outside, videos / "69241.mp4")  # a link out of the data root is not a download
    root.user_manifest.parent.mkdir()
    line = {"id": "evil", "clip": "../../outside.mp4", "gloss": "book", "source": "upload", "status": "accepted"}
    root.user_manifest.write_text(json.dumps(line) + "\n")
    plan = {c.ref: c for c in plan_dataset(config(metadata), root).clips}
    assert not plan["wlasl:69241"].downloaded
    assert (plan["user:evil"].downloaded, plan["user:evil"].note) == (False, "its file is outside the data folder")
    with pytest.raises(DatasetError, match="none is downloaded"):
        build_dataset(config(metadata), root, engine_config=engine_config, show_progress=False)
    for name in ("../x", "/abs", ".hidden", "a/b", ""):
        with pytest.raises(DatasetError, match="not a dataset name"):
            dataset.dataset_folder(root, name)


def test_dataset_and_run_names_follow_one_rule():
    from training.errors import RunError
    from training.finetune.runs import check_name as check_run_name

    for bad in ("../x", "/abs", ".hidden", "a/b", "", "-dash", "a b", "x" * 101):
        for check, error in ((dataset.check_name, DatasetError), (check_run_name, RunError)):
            with pytest.raises(error, match=r"use letters, digits, '\.', '_' and '-', starting with a letter or digit"):
                check(bad)
    assert dataset.check_name(" gestures-v1.2 ") == "gestures-v1.2"
    # A run is named "<dataset>-<UTC timestamp>" by default: the longest dataset name fits.
    longest = "d" * dataset.NAME_LONGEST
    assert check_run_name(f"{longest}-20261201-180000") == f"{longest}-20261201-180000"
    with pytest.raises(DatasetError, match="at most 64"):
        dataset.check_name(longest + "d")


def test_export_zips_the_dataset_atomically(built):
    layout, _, _ = built
    target = build.export_dataset("small", layout)
    assert target == layout.exports / "small.zip"
    names = zipfile.ZipFile(target).namelist()
    assert {"small/dataset.jsonl", "small/config.json", "small/stats.png", "small/clips/69241.mp4"} <= set(names)
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".part")]
    with pytest.raises(DatasetError, match="no built dataset"):
        build.export_dataset("missing", layout)


def test_stats_table_and_plot(tmp_path):
    rows = [{"gloss": g, "split": s, "source": src, "signer_id": sig} for g, s, src, sig in [
        ("book", "train", "aslpro", 1), ("book", "test", "aslpro", 2), ("drink", "train", "user", -1)]]
    counts = stats.compute_stats(rows)
    assert counts.by_gloss["book"] == {"train": 1, "val": 0, "test": 1}
    assert counts.glosses_without["test"] == ["drink"]
    assert stats.gloss_rows(counts)[0] == ["drink", 1, 0, 0, 1]
    table = stats.format_table(counts)
    assert "3 clips, 2 glosses, 3 signers" in table and "1 glosses have no test clip: drink" in table
    assert stats.plot_stats(counts, tmp_path / "s.png", title="t").read_bytes()[:4] == b"\x89PNG"
