"""The web server's own settings (`assets/config/server.yml`), apart from the engine's.

Read with the same reader as every other config of the product: YAML in, unknown keys
are an error, values coerced to the field types (`engine.build_config`).
"""

from __future__ import annotations

import os
import tempfile
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
    # Uploads (POST /gradio_api/upload requests) one client may make on a public or team
    # server, in the same notation; each holds at most `max_upload_files` files of at most
    # the engine's max_file_mb. Without it one script could upload as fast as the network
    # allows. Not applied on a local server (one person, own machine). "" turns it off.
    upload_rate_limit: str = "60/minute;600/hour"
    # Megabytes one client may upload, in the same notation (on a public or team server):
    # the rate above counts requests, and without this one client could fill the whole
    # `upload_cache_max_mb` for everyone else until the sweep. "" turns it off.
    upload_mb_limit: str = "200/minute;600/hour"
    # Login attempts (POST /login) one address may make on a team server; each checks a
    # scrypt hash, so this bounds both password guessing and the CPU it costs.
    login_rate_limit: str = "10/minute;100/hour"
    # Files in one upload request. Gradio takes up to 1,000; every input of the page takes
    # one file, and gradio_client uploads one file per request.
    max_upload_files: int = 4
    # Megabytes this process's upload folder may hold (uploads, results, webcam frames);
    # beyond it uploads are refused with 507 until the sweep makes room, rather than
    # filling the disk. Keep it above engine.yml's limits.max_file_mb.
    upload_cache_max_mb: float = 2000
    # Where uploads go: each process takes a folder of its own under this one, and at
    # start removes the folders of our processes that are gone (killed ones included).
    # "" = $GRADIO_TEMP_DIR/signlens-uploads, else <system temp>/signlens-uploads.
    upload_dir: str = ""
    # Peers whose X-Forwarded-For header is believed when finding a client's address (for
    # the rate limits): uvicorn's forwarded_allow_ips. The default trusts a reverse proxy
    # on this host only; "*" trusts every peer (only where nothing but a proxy can reach
    # the server, e.g. a Hugging Face Space). FORWARDED_ALLOW_IPS overrides it.
    forwarded_allow_ips: str = "127.0.0.1,::1"
    # "json": one JSON object per log line (request id, endpoint, outcome, milliseconds),
    # for log collectors; "text" for people. SIGNLENS_LOG_FORMAT overrides it.
    log_format: str = "text"

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format must be {' or '.join(LOG_FORMATS)}, not {self.log_format!r}.")
        if self.cache_max_age_s < 1 or self.cache_sweep_every_s < 1:
            raise ConfigError("cache_max_age_s and cache_sweep_every_s must be at least 1 second.")
        if self.max_upload_files < 1:
            raise ConfigError(f"max_upload_files must be at least 1, not {self.max_upload_files}.")
        if self.upload_cache_max_mb <= 0:
            raise ConfigError(f"upload_cache_max_mb must be more than 0, not {self.upload_cache_max_mb:g}.")
        for name in ("rate_limit", "upload_rate_limit", "upload_mb_limit", "login_rate_limit"):
            spec = getattr(self, name)
            if spec:
                from limits import parse_many

                try:
                    parse_many(spec)
                except ValueError:
                    raise ConfigError(f"{name} {spec!r} is not like '30/minute;300/hour'.") from None

    def upload_root(self, environ=os.environ) -> Path:
        """The folder under which each process of ours takes its upload folder (see `upload_dir`).

        A folder of our own, never Gradio's shared default (`<temp>/gradio`): what we
        remove from it at start can then only be ours.
        """
        if self.upload_dir:
            return Path(self.upload_dir).expanduser().absolute()
        return Path(environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / "signlens-uploads"


def load_server_config(path: str | Path | None = None, *, environ=os.environ) -> ServerConfig:
    path = project_path(path or DEFAULT_SERVER_CONFIG)
    values = read_config_file(path)
    if environ.get("SIGNLENS_LOG_FORMAT"):
        values = {**values, "log_format": environ["SIGNLENS_LOG_FORMAT"]}
    return build_config(ServerConfig, values, path.name)
