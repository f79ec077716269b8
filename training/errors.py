"""Every error a user can cause in curation and fine-tuning, in one family.

They all derive from `TrainingError`, itself an `engine.errors.SignLensError`, so the web
app, the background jobs and every command line catch one base class and show its
message: one plain sentence, never a traceback. Anything that is not a `SignLensError`
is a bug, logged with its traceback where it is caught.
"""

from __future__ import annotations

from engine import SignLensError


class TrainingError(SignLensError, ValueError):
    """Base of the training side's errors; the message is one sentence for the user."""


class DatasetError(TrainingError):
    """A dataset request that cannot be done (selection, build, a built dataset)."""


class BuildCancelled(DatasetError):
    """The build was stopped before it finished; nothing was written."""


class UserDataError(TrainingError):
    """A request the store of the user's own clips (or a curator's edit) refuses."""


class WlaslFormatError(TrainingError):
    """The metadata file is not WLASL v0.3 as we know it (missing keys, wrong types)."""


class JobBusy(TrainingError):
    """A download or build is already running (one at a time, server-wide)."""


class DownloadError(TrainingError):
    """A clip could not be fetched; recorded in the manifest, and the run goes on.

    `retryable` says whether trying again may help (a timeout, a 503) or not (a 404).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.attempts = 0  # HTTP attempts made before giving up, filled in by the retry loop


class ContentError(DownloadError):
    """The bytes arrived but are not a usable video (HTML page, undecodable, ...)."""


class DownloadConfigError(TrainingError):
    """A downloader setting that cannot work (no workers, no timeout); the message names it."""


class Cancelled(Exception):
    """Internal to the downloader: the run was cancelled; the clip stays pending, its .part kept.

    Not a user's error (nothing went wrong), so not a `TrainingError`.
    """


class FinetuneConfigError(TrainingError):
    """A fine-tuning setting that cannot work; the message names it."""


class RunError(TrainingError):
    """A request about fine-tuning runs that cannot be done."""


class RunBusy(RunError):
    """A training or evaluation process is already running."""
