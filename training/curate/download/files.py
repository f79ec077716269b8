"""Checking, converting and placing downloaded clip files.

Sites answer dead links with HTML pages and serve swf, flv and webm as readily as mp4,
so nothing reaches its final name before it was sniffed, converted if need be, and one
frame decoded; this module holds those checks and the atomic moves that follow them.
"""

from __future__ import annotations

import hashlib
import os
from fractions import Fraction
from pathlib import Path

from training.curate.clipcache import link_or_copy
from training.errors import ContentError

HTML_NOT_VIDEO = "server sent HTML, not a video"
_KEEP_AS_IS = {"mp4", "mov"}  # every other container is re-encoded to mp4


def sniff_container(head: bytes) -> str:
    """Name the video container from a file's first bytes, or raise ContentError.

    Sites answer a dead link with "200 OK" and an HTML page often enough that the
    status code cannot be trusted; the magic numbers can.
    """
    box = head[4:8]
    if box == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if box in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):  # QuickTime without ftyp
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"  # also webm
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head[:3] in (b"FWS", b"CWS", b"ZWS"):
        return "swf"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg-ps"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "mpeg-ts"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--")) or b"<html" in text[:2048]:
        raise ContentError(HTML_NOT_VIDEO)
    raise ContentError(f"not a video file (starts with {head[:12]!r})")


def sniff_file(path: Path) -> str:
    with open(path, "rb") as f:
        return sniff_container(f.read(4096))


def decode_check(path: Path) -> None:
    """Open with PyAV and decode one video frame; raise ContentError if that fails."""
    import av  # heavy; only needed once a file has arrived

    try:
        with av.open(str(path), metadata_errors="replace") as container:
            stream = next((s for s in container.streams if s.type == "video"), None)
            if stream is None:
                raise ContentError("no video stream in the file")
            for _ in container.decode(stream):
                return
    except (av.FFmpegError, OSError, ValueError, EOFError) as e:
        raise ContentError(f"PyAV could not decode it ({e})") from e
    raise ContentError("no decodable video frame")


def convert_to_mp4(src: Path, dst: Path, kind: str) -> None:
    """Re-encode the video stream of ``src`` (swf, flv, webm, ...) as an mp4 at ``dst``.

    Every decoded frame is kept in order at the source frame rate, because WLASL's
    frame_start/frame_end count frames. Audio is dropped: signs are visual.
    """
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    frames = 0
    try:
        with av.open(str(src), metadata_errors="replace") as inp, av.open(str(dst), "w", format="mp4") as out:
            vin = next((s for s in inp.streams if s.type == "video"), None)
            if vin is None:
                raise ContentError(f"could not convert {kind} to mp4 (no video stream)")
            rate = vin.average_rate or vin.base_rate or Fraction(25)
            vout = None
            for frame in inp.decode(vin):
                if vout is None:  # size is only known for sure from the first frame
                    options = {"crf": "18", "preset": "veryfast"} if codec == "libx264" else {}
                    vout = out.add_stream(codec, rate=rate, options=options)
                    vout.width, vout.height = frame.width // 2 * 2, frame.height // 2 * 2
                    vout.pix_fmt = "yuv420p"
                image = frame.reformat(width=vout.width, height=vout.height, format="yuv420p")
                image.pts = frames
                image.time_base = Fraction(1) / Fraction(rate)
                out.mux(vout.encode(image))
                frames += 1
            if vout is not None:
                out.mux(vout.encode(None))
    except (av.FFmpegError, OSError, ValueError, EOFError) as e:
        dst.unlink(missing_ok=True)
        raise ContentError(f"could not convert {kind} to mp4 ({e})") from e
    if frames == 0:
        dst.unlink(missing_ok=True)
        raise ContentError(f"could not convert {kind} to mp4 (no decodable video frame)")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def finalize(downloaded: Path, final: Path) -> tuple[int, str]:
    """Check ``downloaded``, convert if needed, and move the result to ``final``.

    ``final`` appears (atomically) only for a clip that passed every check, so a file at
    the final name is always a good one. A file that failed is deleted: resuming an
    HTML page would only make a longer HTML page.
    """
    converted = final.with_name(final.name + ".conv.part")
    try:
        kind = sniff_file(downloaded)
        if kind in _KEEP_AS_IS:
            decode_check(downloaded)
            ready = downloaded
        else:
            convert_to_mp4(downloaded, converted, kind)
            decode_check(converted)
            ready = converted
        size, sha = ready.stat().st_size, file_sha256(ready)
        os.replace(ready, final)
    except ContentError:
        downloaded.unlink(missing_ok=True)
        converted.unlink(missing_ok=True)
        raise
    downloaded.unlink(missing_ok=True)
    return size, sha


def place_copy(src: Path, dst: Path) -> None:
    """Give ``dst`` the content of ``src``: a hard link where possible, else a copy."""
    tmp = dst.with_name(dst.name + ".part")
    tmp.unlink(missing_ok=True)
    link_or_copy(src, tmp)
    os.replace(tmp, dst)


def adopt(final: Path) -> tuple[int, str] | None:
    """Accept a clip file the manifest does not know (a run killed after the move)."""
    try:
        if sniff_file(final) in _KEEP_AS_IS:
            decode_check(final)
            return final.stat().st_size, file_sha256(final)
    except ContentError:
        pass
    return None
