"""Frame sampling on real clips written by PyAV, whose frames carry their own index."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from engine.config import LimitsConfig
from engine.errors import ClipError
from engine import video
from engine.video import crop_square, load_clip, sample_indices
from media import index_frame, read_index, write_video

LIMITS = LimitsConfig()


def decode_all(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_sample_indices_are_segment_middles():
    assert sample_indices(0, 89, 8) == [5, 16, 28, 39, 50, 61, 73, 84]
    assert sample_indices(10, 13, 8) == [10, 10, 11, 11, 12, 12, 13, 13]  # short spans repeat
    assert sample_indices(0, 0, 3) == [0, 0, 0]


@pytest.mark.parametrize("suffix,codec", [(".mp4", "libx264"), (".webm", "libvpx-vp9"), (".avi", "mpeg4")])
def test_sampled_frames_are_the_expected_source_frames(tmp_path, suffix, codec):
    path = write_video(tmp_path / f"clip{suffix}", 90, codec=codec, gop=12)
    clip = load_clip(path, num_frames=8, limits=LIMITS)
    assert clip.indices == (5, 16, 28, 39, 50, 61, 73, 84)
    assert [read_index(f) for f in clip.frames] == list(clip.indices)
    assert clip.total_frames == 90 and clip.fps == pytest.approx(30)


def test_wlasl_span_is_one_based_and_inclusive(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 120, gop=25)
    clip = load_clip(path, num_frames=4, limits=LIMITS, frame_start=31, frame_end=60)
    # frames 31..60 (1-based) are indices 30..59; four segments of 7.5 frames
    assert clip.indices == (33, 41, 48, 56)
    assert [read_index(f) for f in clip.frames] == [33, 41, 48, 56]
    to_end = load_clip(path, num_frames=2, limits=LIMITS, frame_start=101, frame_end=-1)
    assert to_end.indices == (105, 115)
    assert [read_index(f) for f in to_end.frames] == [105, 115]


def test_trim_in_seconds_uses_the_frames_own_timestamps(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 60, fps=20)
    # 0.5 s .. 1.5 s at 20 fps: the frames shown from 0.5 s up to 1.5 s, indices 10..29
    trimmed = load_clip(path, num_frames=4, limits=LIMITS, start_s=0.5, end_s=1.5)
    assert trimmed.indices == (12, 17, 22, 27)
    assert [read_index(f) for f in trimmed.frames] == [12, 17, 22, 27]
    assert load_clip(path, num_frames=2, limits=LIMITS, start_s=2.0).indices == (45, 55)
    assert load_clip(path, num_frames=2, limits=LIMITS, start_s=0, end_s=0).indices == (15, 45)
    image = tmp_path / "x.png"
    Image.fromarray(index_frame(3)).save(image)
    assert load_clip(image, num_frames=2, limits=LIMITS, start_s=1, end_s=2).indices == (0,)


@pytest.mark.parametrize("start,end,message", [
    (2, 1, "must come after its start"),
    (-1, 0, "zero or a positive number"),
    (float("nan"), 0, "zero or a positive number"),
    (0, float("inf"), "zero or a positive number"),
    ("abc", 0, "must be a number of seconds"),
    ([1], 0, "must be a number of seconds"),
    (50, 0, "The trim starts at 50 s, but clip.mp4 is only 3.0 s long."),
])
def test_bad_trim_gets_one_sentence_in_seconds(tmp_path, start, end, message):
    path = write_video(tmp_path / "clip.mp4", 60, fps=20)
    with pytest.raises(ClipError, match=message.replace(".", r"\.")):
        load_clip(path, num_frames=2, limits=LIMITS, start_s=start, end_s=end)


def test_span_in_frames_and_seconds_together_is_refused(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 30, fps=20)
    with pytest.raises(ClipError, match="not both"):
        load_clip(path, num_frames=2, limits=LIMITS, frame_start=5, start_s=0.5)


@pytest.mark.parametrize(
    "suffix,codec,options",
    [
        (".mp4", "libx264", {"g": "45", "bf": "3", "preset": "ultrafast"}),
        (".avi", "mpeg4", {"g": "45", "bf": "2"}),
        (".webm", "libvpx-vp9", {"g": "45", "auto-alt-ref": "1", "lag-in-frames": "16"}),
    ],
)
def test_seeking_gives_frames_bit_identical_to_decoding_everything(tmp_path, suffix, codec, options):
    # Long GOPs with B-frames (or VP9's hidden alt-ref frames): the case where a wrong
    # seek, or a skipped frame that was a reference after all, shows up as a wrong frame.
    frames = [index_frame(i) + np.uint8(i % 7) for i in range(300)]
    path = tmp_path / f"long{suffix}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30, options=options)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    everything = decode_all(path)
    assert len(everything) == 300
    for count in (8, 16, 40):
        clip = load_clip(path, num_frames=count, limits=LIMITS)
        for index, frame in zip(clip.indices, clip.frames):
            assert np.array_equal(frame, everything[index]), f"frame {index} differs"
    span = load_clip(path, num_frames=5, limits=LIMITS, frame_start=200, frame_end=260)
    assert all(np.array_equal(f, everything[i]) for i, f in zip(span.indices, span.frames))


def test_frames_lost_to_skipping_are_decoded_again(tmp_path, monkeypatch):
    # Skipping trusts that a packet's pts is its frame's pts. Where a file breaks that
    # (packed B-frames in old AVIs), a wanted B-frame gets skipped; simulate it by
    # treating no packet as wanted, and expect the same frames by decoding again.
    frames = [index_frame(i) + np.uint8(i % 7) for i in range(120)]
    path = tmp_path / "bframes.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"g": "60", "bf": "3", "b-pyramid": "none", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    decode_from, modes = video._decode_from, []

    def skip_everything(container, stream, keyframe, keyframe_dts, skip_unless):
        modes.append(skip_unless is not None)
        return decode_from(container, stream, keyframe, keyframe_dts, None if skip_unless is None else set())

    monkeypatch.setattr(video, "_decode_from", skip_everything)
    everything = decode_all(path)
    clip = load_clip(path, num_frames=16, limits=LIMITS)
    assert all(np.array_equal(f, everything[i]) for i, f in zip(clip.indices, clip.frames))
    assert False in modes  # some sampled frame was a skipped B-frame and needed the second pass


def test_image_is_a_one_frame_clip(tmp_path):
    for suffix in (".png", ".jpg", ".webp"):
        path = tmp_path / f"frame{suffix}"
        Image.fromarray(index_frame(300)).save(path)
        clip = load_clip(path, num_frames=8, limits=LIMITS)
        assert len(clip.frames) == 1 and clip.indices == (0,)
        assert read_index(clip.frames[0]) == 300


def test_numpy_frames_from_the_webcam(tmp_path):
    frames = [index_frame(i) for i in range(20)]
    clip = load_clip(frames, num_frames=4, limits=LIMITS)
    assert [read_index(f) for f in clip.frames] == list(clip.indices) == [2, 7, 12, 17]
    stacked = load_clip(np.stack(frames), num_frames=4, limits=LIMITS)
    assert stacked.indices == clip.indices


def test_bbox_crop_is_square_around_the_signer():
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[10:20, 30:40] = 200
    crop = crop_square(frame, [30, 10, 40, 30])
    assert crop.shape == (20, 20, 3)
    assert crop[:10, 5:15].mean() == 200  # the marked box sits at the top middle of the crop
    assert crop_square(frame, [60, 40, 500, 500]).shape == (8, 8, 3)  # clamped to the frame
    assert crop_square(frame, [5, 5, 5, 5]) is frame  # degenerate box: no crop


def write_audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.mark.parametrize(
    "case,message",
    [
        ("empty", "is empty"),
        ("text", "not a video we can read"),
        ("truncated", "is cut short"),
        ("truncated_mp4", "not a video we can read"),
        ("audio", "has no video track"),
        ("too_long", "clips may be at most 2 s"),
        ("too_large", "the limit is"),
        ("missing", "does not exist"),
        ("bad_image", "not an image we can read"),
        ("span", "has only 30 frames"),
        ("empty_frames", "camera sent nothing"),
        ("blank_frame", "camera frame was empty"),
    ],
)
def test_bad_input_raises_one_plain_sentence(tmp_path, case, message):
    limits = LimitsConfig(max_clip_seconds=2, max_file_mb=0.05 if case == "too_large" else 200)
    source, kwargs = tmp_path / "clip.mp4", {}
    if case == "empty":
        source.write_bytes(b"")
    elif case == "text":
        source.write_text("hello, this is not a video\n" * 20)
    elif case == "truncated":
        full = write_video(tmp_path / "full.webm", 60, codec="libvpx-vp9").read_bytes()
        source = tmp_path / "cut.webm"
        source.write_bytes(full[: len(full) // 2])
    elif case == "truncated_mp4":  # the index (moov) is written last, so a cut file has none
        full = write_video(tmp_path / "full.mp4", 60).read_bytes()
        source.write_bytes(full[: len(full) // 2])
    elif case == "audio":
        source = tmp_path / "sound.wav"
        write_audio_only(source)
    elif case == "too_long":
        write_video(source, 150)  # 5 s at 30 fps
    elif case == "too_large":
        source.write_bytes(b"\0" * 100_000)
    elif case == "missing":
        source = tmp_path / "nothing.mp4"
    elif case == "bad_image":
        source = tmp_path / "photo.png"
        source.write_bytes(b"\x89PNG not really")
    elif case == "span":
        write_video(source, 30)
        kwargs = {"frame_start": 40}
    elif case == "empty_frames":
        source = []
    elif case == "blank_frame":
        source = [index_frame(1), np.zeros((0, 0, 3), np.uint8)]
    with pytest.raises(ClipError) as error:
        load_clip(source, num_frames=8, limits=limits, **kwargs)
    text = str(error.value)
    assert message in text
    assert "\n" not in text and "Traceback" not in text
