"""The web server's own settings (`assets/config/server.yml`), apart from the engine's.

Read with the same reader as every other config of the product: YAML in, unknown keys
are an error, values coerced to the field types (`engine.build_config`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine import ConfigError, build_config, project_path, read_config_file

DEFAULT_SERVER_CONFIG = "assets/config/server.yml"
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class ServerConfig:
    # Calls one client may make to the recognition endpoints, in the `limits` library's
    # notation ("30/minute;300/hour": both must hold). A client is its login name, else
    # its address. The model does seconds of work per call on a CPU: without a limit one
    # script could keep everyone else waiting. "" turns the limit off.
    rate_limit: str = "30/minute;300/hour"
    # Uploads and results are files in Gradio's cache; they are deleted once older than
    # this, so disk use does not grow with traffic.
    cache_max_age_s: int = 3600
    # How often that sweep runs.
    cache_sweep_every_s: int = 600
    # "json": one JSON object per log line (request id, endpoint, outcome, milliseconds),
    # for log collectors; "text" for people. SIGNLENS_LOG_FORMAT overrides it.
    log_format: str = "text"

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format must be {' or '.join(LOG_FORMATS)}, not {self.log_format!r}.")
        if self.cache_max_age_s < 1 or self.cache_sweep_every_s < 1:
            raise ConfigError("cache_max_age_s and cache_sweep_every_s must be at least 1 second.")
        if self.rate_limit:
            from limits import parse_many

            try:
                parse_many(self.rate_limit)
            except ValueError:
                raise ConfigError(f"rate_limit {self.rate_limit!r} is not like '30/minute;300/hour'.") from None


def load_server_config(path: str | Path | None = None, *, environ=os.environ) -> ServerConfig:
    path = project_path(path or DEFAULT_SERVER_CONFIG)
    values = read_config_file(path)
    if environ.get("SIGNLENS_LOG_FORMAT"):
        values = {**values, "log_format": environ["SIGNLENS_LOG_FORMAT"]}
    return build_config(ServerConfig, values, path.name)
