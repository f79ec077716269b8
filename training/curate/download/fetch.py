"""Getting a clip's bytes: HTTP with retries and resume, or yt-dlp for YouTube.

The WLASL hosts are small servers that time out, reset connections, cut bodies short
and block clients that hammer them; this module holds the per-host pacing, the retry
policy and the resumable HTTP reads that cope with that, apart from the job runner.
"""

from __future__ import annotations

import http.client
import importlib
import logging
import random
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from training.curate.download.config import DownloadConfig
from training.errors import Cancelled, DownloadError

logger = logging.getLogger(__name__)

YT_DLP_MISSING = "yt-dlp is not installed (pip install 'signlens[youtube]')"


# --- hosts ----------------------------------------------------------------------------

def host_key(url: str) -> str:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    return "youtube" if is_youtube(url) else host


def is_youtube(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    return host == "youtu.be" or host == "youtube.com" or host.endswith(".youtube.com")


class HostGate:
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
            raise Cancelled

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


def _http_attempt(url: str, part: Path, host: str, gate: HostGate, config: DownloadConfig,
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
                        raise Cancelled
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


def fetch_http(url: str, part: Path, gate: HostGate, config: DownloadConfig,
                stop: threading.Event, rng: random.Random) -> int:
    """Download ``url`` into ``part`` with retries; returns the attempts made.

    Raises DownloadError (with ``.attempts`` set) when it gives up.
    """
    host = host_key(url)
    attempts = 0
    while True:
        dead = gate.dead_reason(host)
        if dead:
            error = DownloadError(dead)
            error.attempts = attempts
            raise error
        gate.wait_turn(host, stop)
        if stop.is_set():
            raise Cancelled
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
                raise Cancelled from None


def import_yt_dlp() -> Any | None:
    """yt_dlp if installed (the optional ``youtube`` extra), else None."""
    try:
        return importlib.import_module("yt_dlp")
    except ImportError:
        return None


def fetch_youtube(yt_dlp: Any, url: str, stem: Path, config: DownloadConfig,
                   stop: threading.Event) -> Path:
    """Download a YouTube video with yt-dlp to ``<stem>.yt.<ext>``; returns that path."""

    def on_progress(_: dict) -> None:
        if stop.is_set():
            raise Cancelled  # yt-dlp calls this between chunks: the only way to stop it

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
    except Cancelled:
        raise
    except Exception as e:  # yt-dlp raises its own DownloadError and wraps the rest
        if stop.is_set():
            raise Cancelled from e
        raise DownloadError(f"yt-dlp: {str(e).removeprefix('ERROR: ')[:300]}") from e
    if not path.exists():
        raise DownloadError("yt-dlp reported success but wrote no file")
    return path
