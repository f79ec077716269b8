"""The user clip store: atomic writes, relabel/exclude/restore, paths kept inside the root."""

from __future__ import annotations

import os
import shutil

import av
import numpy as np
import pytest
from PIL import Image

from media import write_video
from training.curate.userdata import add_clip, read_clips, update_clip
from training.errors import UserDataError
from training.layout import DataLayout, resolve_inside


def test_add_relabel_exclude_restore_survive_a_reload(tmp_path):
    source = write_video(tmp_path / "upload.MP4", 6)
    root = DataLayout.at(tmp_path / "data")
    first = add_clip(root, source, " book ", source="upload", predicted="read", confidence=0.41234)
    second = add_clip(root, source, "drink", source="live")
    assert (root.root / first.clip).read_bytes() == source.read_bytes() and first.clip.endswith(".mp4")
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
    source = write_video(tmp_path / "a.mp4", 4)
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


def test_only_decodable_media_is_stored_and_under_what_it_really_is(tmp_path):
    root = DataLayout.at(tmp_path / "data")
    video = write_video(tmp_path / "v.mp4", 6)
    disguised = shutil.copy(video, tmp_path / "clip.html")  # a real video with a page's name
    assert add_clip(root, disguised, "book", source="upload").clip.endswith(".mp4")
    webm = write_video(tmp_path / "w.webm", 6, codec="libvpx-vp9")
    assert add_clip(root, webm, "book", source="upload").clip.endswith(".webm")
    image = tmp_path / "hand.PNG"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    assert add_clip(root, image, "book", source="upload").clip.endswith(".png")

    audio = tmp_path / "audio.mp4"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    cases = {
        "empty.mp4": b"",
        "random.mp4": os.urandom(4096),
        "page.mp4": b"<html><script>alert(1)</script></html>",
        "drawing.svg": b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
        "cut.mp4": video.read_bytes()[: len(video.read_bytes()) // 3],
        "fake.png": b"\x89PNG\r\n\x1a\n" + os.urandom(64),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    for path in [*(tmp_path / name for name in cases), audio]:
        with pytest.raises(UserDataError) as caught:
            add_clip(root, path, "book", source="upload")
        message = str(caught.value)
        assert message.endswith(".") and "\n" not in message and "Traceback" not in message, message
    assert len(read_clips(root)) == 3  # none of the refused files was listed...
    stored = sorted(p.suffix for p in root.user_clips.iterdir())
    assert stored == [".mp4", ".png", ".webm"]  # ...or left on disk
