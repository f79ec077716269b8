"""The user clip store: atomic writes, relabel/exclude/restore, paths kept inside the root."""

from __future__ import annotations

import os

import pytest

from training.curate.userdata import add_clip, read_clips, update_clip
from training.errors import UserDataError
from training.layout import DataLayout, resolve_inside


def test_add_relabel_exclude_restore_survive_a_reload(tmp_path):
    source = tmp_path / "upload.MP4"
    source.write_bytes(b"video bytes")
    root = DataLayout.at(tmp_path / "data")
    first = add_clip(root, source, " book ", source="upload", predicted="read", confidence=0.41234)
    second = add_clip(root, source, "drink", source="live")
    assert (root.root / first.clip).read_bytes() == b"video bytes" and first.clip.endswith(".mp4")
    assert (first.gloss, first.predicted, first.confidence, first.status) == ("book", "read", 0.4123, "pending")
    update_clip(root, first.id, gloss="look at")
    update_clip(root, second.id, status="excluded")
    reloaded = {c.id: c for c in read_clips(root)}
    assert reloaded[first.id].gloss == "look at" and reloaded[second.id].status == "excluded"
    update_clip(root, second.id, status="pending")
    assert {c.id: c.status for c in read_clips(root)}[second.id] == "pending"
    leftovers = [p for p in (root.root / "user").rglob("*") if p.name.endswith(".part")]
    assert leftovers == []


def test_refusals_are_plain_sentences(tmp_path):
    source = tmp_path / "a.mp4"
    source.write_bytes(b"x")
    root = DataLayout.at(tmp_path)
    with pytest.raises(UserDataError, match="Choose the gloss"):
        add_clip(root, source, "  ", source="upload")
    with pytest.raises(UserDataError, match="no longer available"):
        add_clip(root, tmp_path / "gone.mp4", "book", source="upload")
    with pytest.raises(UserDataError, match="No clip with id"):
        update_clip(root, "nope", status="accepted")
    with pytest.raises(UserDataError, match="Unknown status"):
        update_clip(root, "nope", status="deleted")
    for bad, why in (("x" * 100_000, "at most 64"), ("a\nb", "characters a gloss cannot have"),
                     ("a\x00b", "characters a gloss cannot have"), (3, "must be text")):
        with pytest.raises(UserDataError, match=why):
            add_clip(root, source, bad, source="upload")
    assert read_clips(root) == []  # nothing refused was stored


def test_paths_cannot_leave_the_data_root(tmp_path):
    root = tmp_path / "data"
    (root / "user").mkdir(parents=True)
    (root / "user" / "clip.mp4").write_bytes(b"x")
    assert resolve_inside(root, "user/clip.mp4") == (root / "user" / "clip.mp4").resolve()
    os.symlink("/etc", root / "user" / "escape")
    for bad in ("../secret", "/etc/passwd", "user/../../x", "user/escape/passwd"):
        with pytest.raises(UserDataError, match="outside the data folder"):
            resolve_inside(root, bad)
