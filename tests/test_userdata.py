"""The user clip store: atomic writes, relabel/exclude/restore, paths kept inside the root."""

from __future__ import annotations

import os

import pytest

from training.userdata import UserDataError, add_clip, read_clips, resolve_inside, update_clip


def test_add_relabel_exclude_restore_survive_a_reload(tmp_path):
    source = tmp_path / "upload.MP4"
    source.write_bytes(b"video bytes")
    root = tmp_path / "data"
    first = add_clip(root, source, " book ", source="upload", predicted="read", confidence=0.41234)
    second = add_clip(root, source, "drink", source="live")
    assert (root / first.clip).read_bytes() == b"video bytes" and first.clip.endswith(".mp4")
    assert (first.gloss, first.predicted, first.confidence, first.status) == ("book", "read", 0.4123, "pending")
    update_clip(root, first.id, gloss="look at")
    update_clip(root, second.id, status="excluded")
    reloaded = {c.id: c for c in read_clips(root)}
    assert reloaded[first.id].gloss == "look at" and reloaded[second.id].status == "excluded"
    update_clip(root, second.id, status="pending")
    assert {c.id: c.status for c in read_clips(root)}[second.id] == "pending"
    leftovers = [p for p in (root / "user").rglob("*") if p.name.endswith(".part")]
    assert leftovers == []


def test_refusals_are_plain_sentences(tmp_path):
    source = tmp_path / "a.mp4"
    source.write_bytes(b"x")
    with pytest.raises(UserDataError, match="Choose the gloss"):
        add_clip(tmp_path, source, "  ", source="upload")
    with pytest.raises(UserDataError, match="no longer available"):
        add_clip(tmp_path, tmp_path / "gone.mp4", "book", source="upload")
    with pytest.raises(UserDataError, match="No clip with id"):
        update_clip(tmp_path, "nope", status="accepted")
    with pytest.raises(UserDataError, match="Unknown status"):
        update_clip(tmp_path, "nope", status="deleted")


def test_paths_cannot_leave_the_data_root(tmp_path):
    root = tmp_path / "data"
    (root / "user").mkdir(parents=True)
    (root / "user" / "clip.mp4").write_bytes(b"x")
    assert resolve_inside(root, "user/clip.mp4") == (root / "user" / "clip.mp4").resolve()
    os.symlink("/etc", root / "user" / "escape")
    for bad in ("../secret", "/etc/passwd", "user/../../x", "user/escape/passwd"):
        with pytest.raises(UserDataError, match="outside the data folder"):
            resolve_inside(root, bad)
