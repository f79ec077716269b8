"""The downloader's settings, in one frozen dataclass.

The CLI and the web app build one, and both the fetching code and the job runner read
it; it lives apart from ``download.runner`` so that the fetching code can take it
without importing the runner.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.errors import DownloadConfigError


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
        # One sentence naming each bad value and its rule, as the dataset config does.
        problems = [f"{name} must be at least 1, not {getattr(self, name)}"
                    for name in ("workers", "per_host", "chunk_bytes", "max_bytes") if getattr(self, name) < 1]
        problems += [f"{name} must be 0 or more, not {getattr(self, name)}"
                     for name in ("retries", "host_failure_limit", "min_delay_s", "backoff_s", "backoff_max_s",
                                  "manifest_interval_s") if getattr(self, name) < 0]
        if self.timeout_s <= 0:
            problems.append(f"timeout_s must be more than 0 seconds, not {self.timeout_s}")
        if problems:
            raise DownloadConfigError(f"The download settings cannot work: {'; '.join(problems)}.")
