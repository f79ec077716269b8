"""Download WLASL clips: concurrent, polite to each host, resumable, verified.

WLASL lists ~21,000 clips spread over a dozen sign-dictionary sites and YouTube; many
links are dead, some sites answer with an HTML page instead of a video, and a full run
takes hours, so it must survive being interrupted. Each clip ends up as
``<out>/<video_id>.mp4`` only after it was sniffed as a video container and one frame
decoded with PyAV (swf/flv/webm/... are converted to mp4). Every outcome goes to a
JSONL manifest that a re-run reads to skip finished clips and retry the rest.

    python -m training.curate download --subset WLASL100
    python -m training.curate download --sources aslpro handspeak --per-host 1

    from training import download, wlasl
    summary = download.download_instances(wlasl.filter_instances(wlasl.load_wlasl(), subset="WLASL100"),
                                          "data/wlasl/videos")
    print(summary.format_summary())
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import importlib
import json
import logging
import os
import random
import re
import shutil
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from training.wlasl import clip_filename

logger = logging.getLogger(__name__)

STATUSES = ("done", "failed", "skipped")
YT_DLP_MISSING = "yt-dlp is not installed (pip install 'signlens[youtube]')"
HTML_NOT_VIDEO = "server sent HTML, not a video"
_KEEP_AS_IS = {"mp4", "mov"}  # every other container is re-encoded to mp4


class DownloadError(Exception):
    """A clip could not be fetched; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.attempts = 0  # HTTP attempts made before giving up, filled in by the retry loop


class ContentError(DownloadError):
    """The bytes arrived but are not a usable video (HTML page, undecodable, ...)."""


class _Cancelled(Exception):
    """Internal: the run was cancelled; the clip stays pending, its .part kept."""


class Clip(Protocol):
    """What the downloader needs of an instance (``WlaslInstance`` has it)."""

    @property
    def video_id(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def source(self) -> str: ...


@dataclass(frozen=True)
class DownloadConfig:
    """How hard and how politely to download."""

    workers: int = 8  # clips in flight at once; network-bound, so more than the CPU count is fine
    per_host: int = 2  # at most this many at once per host: the dictionary sites are small
    # servers holding thousands of WLASL clips each, and hammering them gets us blocked
    min_delay_s: float = 0.0  # least gap between two request starts to one host (0 = none)
    timeout_s: float = 30.0  # socket timeout for the connect and for every read
    retries: int = 3  # extra attempts after a transient failure (5xx, 408/429, timeout, reset,
    # body shorter than Content-Length); never after other 4xx: a 404 stays a 404
    backoff_s: float = 1.0  # wait before the first retry; doubles per retry, with jitter
    backoff_max_s: float = 60.0  # cap on one backoff wait
    user_agent: str = "SignLens-WLASL-downloader/0.1 (sign-language research dataset curation)"
    max_bytes: int = 500 * 2**20  # refuse larger files: a clip is a few MB (YouTube videos
    # hold several signs and are bigger); anything huge is the wrong URL
    chunk_bytes: int = 256 * 1024  # read size; also how often cancellation is checked
    host_failure_limit: int = 10  # after this many connection failures in a row (refused,
    # timeout, DNS) a host counts as dead and its remaining clips fail at once instead of
    # each waiting out timeouts and retries; 0 = never give up
    rehash_existing: bool = False  # a re-run trusts a done clip whose size matches the
    # manifest; True re-computes its sha256 too (slow for thousands of clips)
    manifest_interval_s: float = 1.0  # rewrite the manifest at most this often (and at the end)
    youtube_format: str = "bv*[ext=mp4][height<=720]/b[ext=mp4]/bv*/b"  # yt-dlp format;
    # single files only, so no ffmpeg merge is needed (the audio is not used)

    def __post_init__(self) -> None:
        bad = {name: getattr(self, name) for name in ("workers", "per_host", "chunk_bytes", "max_bytes")
               if getattr(self, name) < 1}
        bad |= {name: getattr(self, name) for name in ("retries", "host_failure_limit", "min_delay_s",
                                                        "backoff_s", "backoff_max_s", "manifest_interval_s")
                if getattr(self, name) < 0}
        if self.timeout_s <= 0:
            bad["timeout_s"] = self.timeout_s
        if bad:
            raise ValueError(f"invalid DownloadConfig values: {bad} (counts must be >= 1, "
                             "timeout_s > 0, retries/delays/limits >= 0)")


@dataclass(frozen=True)
class ManifestRecord:
    """One line of the manifest: the latest outcome for one clip."""

    video_id: str
    url: str
    status: str  # "done" | "failed" | "skipped"
    bytes: int  # size of the final .mp4 (0 unless done)
    sha256: str  # of the final .mp4 ("" unless done); a re-run compares the size (see config)
    error: str  # why it failed or was skipped ("" when done)
    time: str  # when the outcome was recorded, ISO 8601 UTC
    attempts: int  # HTTP attempts made this time (0: adopted file, skipped, or host given up)
    source: str  # WLASL source site, for the per-source summary


@dataclass(frozen=True)
class SourceSummary:
    """Outcome counts for one WLASL source site."""

    source: str
    done: int
    failed: int
    skipped: int
    pending: int  # not attempted because the run was cancelled
    top_reasons: tuple[tuple[str, int], ...]  # (reason, count) of failed/skipped, most common first


@dataclass(frozen=True)
class DownloadSummary:
    """What a download run achieved, per source."""

    sources: tuple[SourceSummary, ...]
    total: int  # clips asked for (distinct video ids)
    already_done: int  # of which were done before this run and left alone
    cancelled: bool
    elapsed_s: float
    manifest_path: Path

    def format_summary(self) -> str:
        return format_summary(self)


def format_summary(summary: DownloadSummary) -> str:
    """A plain-text table: one row per source, a total row, and the top reasons."""
    header = f"{'source':<16}{'done':>7}{'failed':>8}{'skipped':>9}{'pending':>9}  top reasons"
    lines = [header, "-" * len(header)]
    totals = Counter()
    for s in summary.sources:
        reasons = "; ".join(f"{r} x{n}" for r, n in s.top_reasons)
        lines.append(f"{s.source:<16}{s.done:>7}{s.failed:>8}{s.skipped:>9}{s.pending:>9}  {reasons}")
        totals.update(done=s.done, failed=s.failed, skipped=s.skipped, pending=s.pending)
    lines.append("-" * len(header))
    lines.append(f"{'total':<16}{totals['done']:>7}{totals['failed']:>8}{totals['skipped']:>9}"
                 f"{totals['pending']:>9}  ({summary.already_done} already done, "
                 f"{summary.elapsed_s:.1f} s{', cancelled' if summary.cancelled else ''})")
    return "\n".join(lines)


# --- manifest -------------------------------------------------------------------------

def read_manifest(path: str | Path) -> dict[str, ManifestRecord]:
    """Read a manifest into {video_id: record}; a missing file is an empty manifest.

    Unreadable lines are skipped with a warning: the manifest is a cache of outcomes,
    and the worst a lost line costs is one more download.
    """
    path = Path(path)
    records: dict[str, ManifestRecord] = {}
    if not path.exists():
        return records
    fields = {f.name for f in dataclasses.fields(ManifestRecord)}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                record = ManifestRecord(**{k: raw[k] for k in fields})
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                logger.warning("%s:%d: ignoring unreadable manifest line (%s)", path, n, e)
                continue
            records[record.video_id] = record
    return records


def write_manifest(path: str | Path, records: Iterable[ManifestRecord]) -> None:
    """Rewrite the manifest atomically, so a kill at any moment leaves a whole file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --- content checks -------------------------------------------------------------------

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


def _sniff_file(path: Path) -> str:
    with open(path, "rb") as f:
        return sniff_container(f.read(4096))


def _decode_check(path: Path) -> None:
    """Open with PyAV and decode one video frame; raise ContentError if that fails."""
    import av  # heavy; only needed once a file has arrived

    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "video"), None)
            if stream is None:
                raise ContentError("no video stream in the file")
            for _ in container.decode(stream):
                return
    except (av.FFmpegError, OSError, ValueError, EOFError) as e:
        raise ContentError(f"PyAV could not decode it ({e})") from e
    raise ContentError("no decodable video frame")


def _convert_to_mp4(src: Path, dst: Path, kind: str) -> None:
    """Re-encode the video stream of ``src`` (swf, flv, webm, ...) as an mp4 at ``dst``.

    Every decoded frame is kept in order at the source frame rate, because WLASL's
    frame_start/frame_end count frames. Audio is dropped: signs are visual.
    """
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    frames = 0
    try:
        with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _finalize(downloaded: Path, final: Path) -> tuple[int, str]:
    """Check ``downloaded``, convert if needed, and move the result to ``final``.

    ``final`` appears (atomically) only for a clip that passed every check, so a file at
    the final name is always a good one. A file that failed is deleted: resuming an
    HTML page would only make a longer HTML page.
    """
    converted = final.with_name(final.name + ".conv.part")
    try:
        kind = _sniff_file(downloaded)
        if kind in _KEEP_AS_IS:
            _decode_check(downloaded)
            ready = downloaded
        else:
            _convert_to_mp4(downloaded, converted, kind)
            _decode_check(converted)
            ready = converted
        size, sha = ready.stat().st_size, _sha256(ready)
        os.replace(ready, final)
    except ContentError:
        downloaded.unlink(missing_ok=True)
        converted.unlink(missing_ok=True)
        raise
    downloaded.unlink(missing_ok=True)
    return size, sha


# --- hosts ----------------------------------------------------------------------------

def _host_key(url: str) -> str:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    return "youtube" if _is_youtube(url) else host


def _is_youtube(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    return host == "youtu.be" or host == "youtube.com" or host.endswith(".youtube.com")


class _HostGate:
    """Per-host request pacing and dead-host detection, shared by the worker threads.

    Per-host *concurrency* is enforced by the dispatcher (it never starts more than
    ``per_host`` jobs of one host); this object spaces the individual requests.
    """

    def __init__(self, config: DownloadConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._next_start: dict[str, float] = {}
        self._failures_in_a_row: Counter[str] = Counter()
        self._last_failure: dict[str, str] = {}

    def wait_turn(self, host: str, stop: threading.Event) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start.get(host, now))
            self._next_start[host] = start + self._config.min_delay_s
        if start > now and stop.wait(start - now):
            raise _Cancelled

    def reached(self, host: str) -> None:
        with self._lock:
            self._failures_in_a_row[host] = 0

    def unreachable(self, host: str, reason: str) -> None:
        with self._lock:
            self._failures_in_a_row[host] += 1
            self._last_failure[host] = reason

    def dead_reason(self, host: str) -> str | None:
        limit = self._config.host_failure_limit
        with self._lock:
            if limit and self._failures_in_a_row[host] >= limit:
                return (f"host unreachable (gave up on {host} after {limit} connection failures "
                        f"in a row, last: {self._last_failure[host]})")
        return None


# --- fetching -------------------------------------------------------------------------

def _describe_network_error(e: BaseException) -> tuple[str, bool]:
    """(message, retryable) for an exception raised below urllib's HTTP layer."""
    if isinstance(e, urllib.error.URLError) and isinstance(e.reason, BaseException):
        e = e.reason
    if isinstance(e, (TimeoutError, socket.timeout)):
        return "timed out", True
    if isinstance(e, socket.gaierror):
        return "host not found (DNS)", False
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected ({e.verify_message})", False
    if isinstance(e, ssl.SSLError):
        return f"TLS error ({e})", False
    if isinstance(e, ConnectionRefusedError):
        return "connection refused", True
    if isinstance(e, (ConnectionResetError, http.client.RemoteDisconnected, ConnectionAbortedError)):
        return "connection reset", True
    return f"network error ({e})", True


def _http_attempt(url: str, part: Path, host: str, gate: _HostGate, config: DownloadConfig,
                  stop: threading.Event) -> None:
    """One HTTP request, appending to ``part`` when the server honours our Range."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": config.user_agent, "Accept": "*/*"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=config.timeout_s)
    except urllib.error.HTTPError as e:
        gate.reached(host)
        e.close()
        if e.code == 416 and offset:
            total = re.fullmatch(r"bytes \*/(\d+)", e.headers.get("Content-Range", "") or "")
            if total and int(total.group(1)) == offset:
                return  # the .part was already complete (killed while checking it)
            part.unlink(missing_ok=True)
            raise DownloadError("server refused the Range request (HTTP 416)", retryable=True) from e
        retryable = e.code >= 500 or e.code in (408, 429)  # 408/429 mean "later", not "never"
        raise DownloadError(f"HTTP {e.code} {e.reason}".strip(), retryable=retryable) from e
    except (OSError, http.client.HTTPException) as e:
        message, retryable = _describe_network_error(e)
        gate.unreachable(host, message)
        raise DownloadError(message, retryable=retryable) from e
    gate.reached(host)
    with response:
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if offset and response.status == 206:
            content_range = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", "") or "")
            if not content_range or int(content_range.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise DownloadError("server sent the wrong byte range", retryable=True)
            mode = "ab"
        else:
            mode, offset = "wb", 0  # a 200 to a Range request is the whole file: start over
        expected = offset + length if length is not None else None
        if expected is not None and expected > config.max_bytes:
            raise DownloadError(f"file larger than max_bytes ({expected} > {config.max_bytes})")
        received = offset
        try:
            with open(part, mode) as f:
                # read1, not read: it returns what has arrived instead of waiting for a
                # full chunk, so a stall or cancel loses nothing already received.
                while chunk := response.read1(config.chunk_bytes):
                    f.write(chunk)
                    f.flush()  # what is in .part is what a resume after a kill may keep
                    received += len(chunk)
                    if received > config.max_bytes:
                        break
                    if stop.is_set():
                        raise _Cancelled
        except (OSError, http.client.HTTPException) as e:
            message, retryable = _describe_network_error(e)
            raise DownloadError(f"{message} after {received} bytes", retryable=retryable) from e
    if received > config.max_bytes:
        part.unlink(missing_ok=True)
        raise DownloadError(f"file larger than max_bytes (> {config.max_bytes})")
    if expected is not None and received < expected:
        # urllib returns b"" at a premature EOF instead of raising; the bytes we have are
        # kept in .part, and the next attempt asks for the rest with Range.
        raise DownloadError(f"connection closed early (got {received} of {expected} bytes)",
                            retryable=True)


def _fetch_http(url: str, part: Path, gate: _HostGate, config: DownloadConfig,
                stop: threading.Event, rng: random.Random) -> int:
    """Download ``url`` into ``part`` with retries; returns the attempts made.

    Raises DownloadError (with ``.attempts`` set) when it gives up.
    """
    host = _host_key(url)
    attempts = 0
    while True:
        dead = gate.dead_reason(host)
        if dead:
            error = DownloadError(dead)
            error.attempts = attempts
            raise error
        gate.wait_turn(host, stop)
        if stop.is_set():
            raise _Cancelled
        attempts += 1
        try:
            _http_attempt(url, part, host, gate, config, stop)
            return attempts
        except DownloadError as e:
            e.attempts = attempts
            if not e.retryable or attempts > config.retries:
                raise
            delay = min(config.backoff_max_s, config.backoff_s * 2 ** (attempts - 1))
            delay *= rng.uniform(0.5, 1.0)  # jitter: retries of many clips do not line up
            logger.debug("retrying %s in %.2f s after: %s", url, delay, e)
            if stop.wait(delay):
                raise _Cancelled from None


def _import_yt_dlp() -> Any | None:
    """yt_dlp if installed (the optional ``youtube`` extra), else None."""
    try:
        return importlib.import_module("yt_dlp")
    except ImportError:
        return None


def _fetch_youtube(yt_dlp: Any, url: str, stem: Path, config: DownloadConfig,
                   stop: threading.Event) -> Path:
    """Download a YouTube video with yt-dlp to ``<stem>.yt.<ext>``; returns that path."""

    def on_progress(_: dict) -> None:
        if stop.is_set():
            raise _Cancelled  # yt-dlp calls this between chunks: the only way to stop it

    options = {
        "outtmpl": f"{stem}.yt.%(ext)s",
        "format": config.youtube_format,
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "retries": config.retries,
        "socket_timeout": config.timeout_s,
        "progress_hooks": [on_progress],
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
            path = Path(ydl.prepare_filename(info))
    except _Cancelled:
        raise
    except Exception as e:  # yt-dlp raises its own DownloadError and wraps the rest
        if stop.is_set():
            raise _Cancelled from e
        raise DownloadError(f"yt-dlp: {str(e).removeprefix('ERROR: ')[:300]}") from e
    if not path.exists():
        raise DownloadError("yt-dlp reported success but wrote no file")
    return path


# --- one job (one URL, one or more video ids) -----------------------------------------

@dataclass(frozen=True)
class _Job:
    url: str
    clips: tuple[Clip, ...]  # WLASL reuses some URLs for several instances: fetch once


@dataclass(frozen=True)
class _Context:
    out_dir: Path
    config: DownloadConfig
    gate: _HostGate
    stop: threading.Event
    previous: dict[str, ManifestRecord]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _records(job: _Job, status: str, *, error: str = "", size: int = 0, sha: str = "",
             attempts: int = 0) -> list[ManifestRecord]:
    return [ManifestRecord(video_id=c.video_id, url=job.url, status=status, bytes=size, sha256=sha,
                           error=error, time=_now(), attempts=attempts, source=c.source)
            for c in job.clips]


def _place_copy(src: Path, dst: Path) -> None:
    """Give ``dst`` the content of ``src``: a hard link where possible, else a copy."""
    tmp = dst.with_name(dst.name + ".part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _adopt(final: Path) -> tuple[int, str] | None:
    """Accept a clip file the manifest does not know (a run killed after the move)."""
    try:
        if _sniff_file(final) in _KEEP_AS_IS:
            _decode_check(final)
            return final.stat().st_size, _sha256(final)
    except ContentError:
        pass
    return None


def _run_job(job: _Job, ctx: _Context) -> list[ManifestRecord] | None:
    """Fetch, verify and place one URL's clip(s); None if cancelled before an outcome."""
    if ctx.stop.is_set():
        return None
    first = job.clips[0]
    final = ctx.out_dir / clip_filename(first.video_id)
    part = final.with_name(final.name + ".part")
    attempts = 0
    try:
        previous = ctx.previous.get(first.video_id)
        if final.exists():
            adopted = _adopt(final) if previous is None or previous.status != "done" else None
            if adopted is None:
                final.unlink()  # a done clip that no longer matches the manifest: fetch again
        else:
            adopted = None
        if adopted is not None:
            size, sha = adopted
        elif _is_youtube(job.url):
            yt_dlp = _import_yt_dlp()
            if yt_dlp is None:
                return _records(job, "skipped", error=YT_DLP_MISSING)
            attempts = 1
            size, sha = _finalize(_fetch_youtube(yt_dlp, job.url, ctx.out_dir / first.video_id,
                                                 ctx.config, ctx.stop), final)
        else:
            rng = random.Random(f"{first.video_id}:{time.time_ns()}")
            attempts = _fetch_http(job.url, part, ctx.gate, ctx.config, ctx.stop, rng)
            size, sha = _finalize(part, final)
        for other in job.clips[1:]:
            _place_copy(final, ctx.out_dir / clip_filename(other.video_id))
    except _Cancelled:
        return None
    except DownloadError as e:
        return _records(job, "failed", error=str(e), attempts=e.attempts or attempts)
    except Exception as e:  # a bug or a full disk: record it and keep going with the rest
        logger.exception("unexpected error for %s", job.url)
        return _records(job, "failed", error=f"unexpected {type(e).__name__} ({e})", attempts=attempts)
    return _records(job, "done", size=size, sha=sha, attempts=attempts)


# --- the run --------------------------------------------------------------------------

def _is_still_done(record: ManifestRecord | None, clip: Clip, out_dir: Path,
                   config: DownloadConfig) -> bool:
    # Size by default: the final name only ever receives a verified file via os.replace,
    # so what is left to catch is a file deleted, truncated or replaced by hand, which
    # the size shows; hashing every clip on each re-run would read the whole dataset.
    if record is None or record.status != "done" or record.url != clip.url:
        return False
    path = out_dir / clip_filename(clip.video_id)
    try:
        if path.stat().st_size != record.bytes:
            return False
    except FileNotFoundError:
        return False
    return not config.rehash_existing or _sha256(path) == record.sha256


def _plan_jobs(pending: list[Clip], out_dir: Path) -> dict[str, deque[_Job]]:
    """Group pending clips by URL, then queue the jobs per host, in input order."""
    by_url: dict[str, list[Clip]] = {}
    for clip in pending:
        by_url.setdefault(clip.url, []).append(clip)

    def part_size(clip: Clip) -> int:
        part = out_dir / (clip_filename(clip.video_id) + ".part")
        return part.stat().st_size if part.exists() else -1

    queues: dict[str, deque[_Job]] = {}
    for url, clips in by_url.items():
        # The clip with the biggest .part goes first, so a shared URL resumes where it was.
        clips.sort(key=part_size, reverse=True)
        queues.setdefault(_host_key(url), deque()).append(_Job(url, tuple(clips)))
    return queues


def _summarize(clips: list[Clip], records: dict[str, ManifestRecord], *, already_done: int,
               cancelled: bool, elapsed_s: float, manifest_path: Path) -> DownloadSummary:
    counts: dict[str, Counter[str]] = {}
    reasons: dict[str, Counter[str]] = {}
    for clip in clips:
        record = records.get(clip.video_id)
        # Records from an earlier run for a different URL say nothing about this one.
        status = record.status if record is not None and record.url == clip.url else "pending"
        counts.setdefault(clip.source, Counter())[status] += 1
        if status in ("failed", "skipped"):
            # "connection closed early (got 5 of 9 bytes)" and the like group by their head.
            reasons.setdefault(clip.source, Counter())[record.error.split(" (")[0]] += 1
    sources = tuple(
        SourceSummary(source=source, done=c["done"], failed=c["failed"], skipped=c["skipped"],
                      pending=c["pending"],
                      top_reasons=tuple(reasons.get(source, Counter()).most_common(3)))
        for source, c in sorted(counts.items()))
    return DownloadSummary(sources=sources, total=len(clips), already_done=already_done,
                           cancelled=cancelled, elapsed_s=elapsed_s, manifest_path=manifest_path)


def download_instances(
    instances: Iterable[Clip],
    out_dir: str | Path,
    *,
    config: DownloadConfig | None = None,
    manifest_path: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    show_progress: bool = True,
) -> DownloadSummary:
    """Download every instance's clip to ``out_dir/<video_id>.mp4``; returns a summary.

    ``manifest_path`` defaults to ``out_dir/manifest.jsonl``; records of clips not in
    ``instances`` are kept. ``progress(done, total)`` is called as clips finish (for the
    UI); ``cancel`` stops the run soon after it is set: running downloads keep their
    ``.part`` files and the manifest stays valid. Ctrl-C does the same, then re-raises.
    """
    config = config or DownloadConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = Path(manifest_path) if manifest_path is not None else out_dir / "manifest.jsonl"
    records = read_manifest(manifest_path)
    previous = dict(records)
    started = time.monotonic()

    clips: list[Clip] = []
    seen: dict[str, str] = {}
    for clip in instances:
        if clip.video_id in seen:
            if seen[clip.video_id] != clip.url:
                raise ValueError(f"video_id {clip.video_id!r} appears with two URLs")
            continue
        clip_filename(clip.video_id)  # rejects ids that are not safe file names, before any work
        seen[clip.video_id] = clip.url
        clips.append(clip)
    pending = [c for c in clips if not _is_still_done(records.get(c.video_id), c, out_dir, config)]
    already_done = len(clips) - len(pending)
    queues = _plan_jobs(pending, out_dir)

    stop = threading.Event()
    ctx = _Context(out_dir=out_dir, config=config, gate=_HostGate(config), stop=stop, previous=previous)
    finished = already_done
    if progress is not None:
        progress(finished, len(clips))
    bar = tqdm(total=len(clips), initial=already_done, desc="WLASL clips", unit="clip",
               disable=not show_progress)
    in_flight: dict[Future, tuple[str, _Job]] = {}
    active: Counter[str] = Counter()
    last_write = 0.0
    executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="wlasl-download")

    def collect(future: Future, notify: bool = True) -> None:
        nonlocal finished
        host, job = in_flight.pop(future)
        active[host] -= 1
        result = future.result()  # _run_job catches everything but BaseException
        if result is None:
            return
        for record in result:
            records[record.video_id] = record
        finished += len(result)
        if notify:  # not while unwinding: a callback that raised must not stop the cleanup
            bar.update(len(result))
            if progress is not None:
                progress(finished, len(clips))

    try:
        while queues or in_flight:
            if cancel is not None and cancel.is_set():
                stop.set()
            # Start jobs round-robin over hosts with a free slot: a host holding thousands of
            # clips must not occupy every worker while the other hosts wait.
            while not stop.is_set() and len(in_flight) < config.workers:
                host = next((h for h in queues if active[h] < config.per_host), None)
                if host is None:
                    break
                job = queues[host].popleft()
                if queues[host]:
                    queues[host] = queues.pop(host)  # move to the back of the rotation
                else:
                    del queues[host]
                active[host] += 1
                in_flight[executor.submit(_run_job, job, ctx)] = (host, job)
            if stop.is_set() and not in_flight:
                break
            done, _ = wait(list(in_flight), timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                collect(future)
            if done and time.monotonic() - last_write >= config.manifest_interval_s:
                write_manifest(manifest_path, records.values())
                last_write = time.monotonic()
    finally:
        stop.set()  # also on Ctrl-C: workers stop between chunks and keep their .part
        executor.shutdown(wait=True, cancel_futures=True)
        for future in [f for f in in_flight if f.done() and not f.cancelled()]:
            collect(future, notify=False)
        write_manifest(manifest_path, records.values())
        bar.close()
    return _summarize(clips, records, already_done=already_done,
                      cancelled=finished < len(clips),
                      elapsed_s=time.monotonic() - started, manifest_path=manifest_path)
