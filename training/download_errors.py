"""The downloader's exceptions, apart from the code that raises them.

Fetching, checking files and running the jobs all raise or catch these; a module of
their own lets each of those import them without importing ``training.download``,
which imports all of them.
"""

from __future__ import annotations


class DownloadError(Exception):
    """A clip could not be fetched; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.attempts = 0  # HTTP attempts made before giving up, filled in by the retry loop


class ContentError(DownloadError):
    """The bytes arrived but are not a usable video (HTML page, undecodable, ...)."""


class Cancelled(Exception):
    """Internal: the run was cancelled; the clip stays pending, its .part kept."""
