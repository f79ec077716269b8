"""Importing WLASL videos people already have: matched by id, checked, linked, recorded, once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from curation_data import frame
from media import write_video
from training.curate.download.manifest import read_manifest
from training.curate.importer import import_videos
from training.curate.plan import load_instances, plan_dataset
from training.dataset import DatasetConfig
from training.errors import DatasetError
from training.layout import DataLayout


@pytest.fixture
def held(tmp_path):
    """A folder as people hold WLASL: per-gloss folders, one webm, one stray file, one broken, one twice."""
    source = tmp_path / "my-wlasl"
    for gloss in ("book", "drink", "extra", "computer"):
        (source / gloss).mkdir(parents=True)
    clip = [frame(i) for i in range(12)]
    write_video(source / "book" / "69241.mp4", clip, fps=25)
    write_video(source / "book" / "65225.mp4", clip, fps=25)
    write_video(source / "drink" / "69302.webm", clip, fps=25, codec="libvpx-vp9")  # converted to mp4
    write_video(source / "extra" / "69241.mp4", clip[:6], fps=25)  # a second file for 69241
    write_video(source / "not-wlasl.mp4", clip, fps=25)  # no such video id
    (source / "computer" / "12306.mp4").write_bytes(b"<html>a dead link's page</html>")
    (source / "README.txt").write_text("not a video: ignored")
    return source


def test_import_matches_checks_links_and_records(held, tmp_path):
    layout = DataLayout.at(tmp_path / "data")
    instances = load_instances()
    report = import_videos(held, layout, instances)
    assert sorted(report.imported) == ["65225", "69241", "69302"]
    assert report.unknown == ["not-wlasl.mp4"] and report.duplicates == ["extra/69241.mp4"]
    assert [name for name, _ in report.broken] == ["computer/12306.mp4"]
    assert "3 imported, 0 already there, 1 with an unknown video id, 1 duplicates, 1 broken." in report.summary()
    # mp4 files are hard links (no second copy); the webm became an mp4 that decodes.
    assert (layout.videos / "69241.mp4").stat().st_ino == (held / "book" / "69241.mp4").stat().st_ino
    with open(layout.videos / "69302.mp4", "rb") as handle:
        assert handle.read(12)[4:8] == b"ftyp"
    records = read_manifest(layout.download_manifest)
    assert {k: (r.status, r.origin, r.source) for k, r in records.items()} == {
        v: ("done", "imported", instances.get(v).source) for v in ("65225", "69241", "69302")}
    # The plan sees them as there: builds take them like downloads.
    plan = {c.video_id: c for c in plan_dataset(DatasetConfig(subset="WLASL100", glossary=""), layout).clips}
    assert plan["69241"].downloaded and plan["69302"].downloaded and not plan["12306"].downloaded

    again = import_videos(held, layout, instances)  # a re-run does nothing new
    assert again.imported == [] and sorted(again.present) == ["65225", "69241", "69302"]
    assert read_manifest(layout.download_manifest) == records
    assert not [p for p in layout.root.rglob("*.part")]


def test_a_killed_import_is_finished_by_the_next_run(held, tmp_path):
    layout = DataLayout.at(tmp_path / "data")
    layout.videos.mkdir(parents=True)
    # A run killed after placing one file, before writing the manifest, with its temp file left.
    os.link(held / "book" / "69241.mp4", layout.videos / "69241.mp4")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (layout.videos / f".65225.mp4.{dead.stdout.strip()}.abcd.part").write_bytes(b"half a file")
    report = import_videos(held, layout, load_instances())
    assert report.present == ["69241"] and sorted(report.imported) == ["65225", "69302"]
    assert set(read_manifest(layout.download_manifest)) == {"65225", "69241", "69302"}
    assert not list(layout.videos.glob(".*.part"))


def test_import_refuses_what_is_not_a_folder_of_videos(tmp_path):
    layout = DataLayout.at(tmp_path / "data")
    with pytest.raises(DatasetError, match="There is no folder"):
        import_videos(tmp_path / "missing", layout, load_instances())
    with pytest.raises(DatasetError, match="There is no folder x{40}\\.\\.\\. to import from"):  # "File name too long"
        import_videos(tmp_path / ("x" * 300), layout, load_instances())
    layout.videos.mkdir(parents=True)
    with pytest.raises(DatasetError, match="download folder itself"):
        import_videos(layout.videos, layout, load_instances())


def test_import_from_the_command_line(held, tmp_path):
    result = subprocess.run([sys.executable, "-m", "training.curate", "import", str(held), "--data", str(tmp_path / "d")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3 imported, 0 already there, 1 with an unknown video id")
    missing = subprocess.run([sys.executable, "-m", "training.curate", "import", str(tmp_path / "nope")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (missing.returncode, missing.stderr) == (2, "error: There is no folder nope to import from.\n")
