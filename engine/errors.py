"""Domain errors: each carries one plain sentence a user can act on.

The web app shows `str(error)` as-is (as a `gr.Error`) and the CLI prints it, so the
message must never contain a traceback, a token or an internal path the user did not give.
"""


class SignLensError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(SignLensError, ValueError):
    """The configuration file, an environment override or an option is invalid."""


class DeviceError(SignLensError, ValueError):
    """A device was requested explicitly and this machine does not have it."""


class ClipError(SignLensError, ValueError):
    """A clip or image cannot be used: empty, not a video, damaged, too long, too large."""


class ModelLoadError(SignLensError, RuntimeError):
    """The model or processor could not be loaded (offline, missing, gated, broken)."""


class ModelNotReadyError(SignLensError, RuntimeError):
    """A request arrived while the model is still loading, or after it failed to load."""


class AdapterError(SignLensError, ValueError):
    """A LoRA adapter folder is missing, broken, or does not fit the loaded model."""
