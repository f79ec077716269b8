"""The Gradio Blocks app. UI only: every event calls a function of `engine` or `training`.

    app = build_app(engine, layout=DataLayout.at())
    serve(app, engine, host="127.0.0.1", port=7860)

Layout: a status header (model state, device, vocabulary, adapter; refreshed while it
changes), then one tab per task, each in its own module, and the API endpoints
(`webapp/api.py`). The page is served while the model loads; a call before it is ready
gets the engine's "The model is still loading; try again in a moment."
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import re

import gradio as gr

from engine import Engine, LiveConfig, load_live_config
from training.layout import DataLayout
from webapp.access import HOW_TO_ENABLE, LOCAL, Access
from webapp import a11y
from webapp.api import build_api
from webapp.cache import guard_uploads
from webapp.common import UNEXPECTED
from webapp.ops import RateLimit, Telemetry, add_routes, plain_413, throttle_logins
from webapp.settings import ServerConfig, load_server_config
from webapp.curate_tab import build_curate_tab
from webapp.finetune_tab import build_finetune_tab
from webapp.live import build_live_tab
from webapp.status import public_text, status_markdown
from webapp.upload import build_upload_tab

log = logging.getLogger(__name__)

# Events waiting in the queue at most; beyond it a caller is told the app is busy
# rather than waiting minutes behind a CPU model.
QUEUE_SIZE = 64


class SignLensBlocks(gr.Blocks):
    """Blocks whose every refusal is one plain sentence, Gradio's own checks included.

    Gradio validates a call before our handlers run (the number of inputs, the shape of
    a file reference, whether a file was uploaded here); with `show_error=False` its
    errors reach the caller as a bare "Error", and with True as multi-line internals.
    Here they become a sentence; anything else unexpected is logged and gets the
    generic one (our handlers already turn their own errors into sentences).
    """

    async def process_api(self, block_fn, inputs, *args, **kwargs):
        try:
            return await super().process_api(block_fn, inputs, *args, **kwargs)
        except gr.Error as exc:
            # Gradio's Dropdown/CheckboxGroup/Radio refuse a value outside their choices
            # with a gr.Error that lists every choice (hundreds of glosses): say it short.
            if "is not in the list of choices" in str(exc):
                raise gr.Error(_choice_refusal(str(getattr(exc, "message", exc)), block_fn, inputs),
                               print_exception=False) from None
            raise
        except Exception as exc:
            raise gr.Error(_plain_refusal(exc), print_exception=False) from None


def _plain_refusal(exc: Exception) -> str:
    text = str(exc)
    if "didn't receive enough input values" in text:
        needed = re.search(r"needed: (\d+)", text)
        count = needed.group(1) if needed else "all its"
        return f"This call is missing inputs: it takes {count} value{'' if count == '1' else 's'}, in order."
    if "'meta' field must be explicitly provided" in text or "validation error for FileData" in text:
        return ("A file was sent in a form this server does not take: upload it first and send "
                "{path, meta: {_type: gradio.FileData}} (gradio_client's handle_file does).")
    if "InvalidPathError" in type(exc).__name__ or "not in the upload folder" in text or "cannot be accessed" in text:
        return "That file was not uploaded to this server: upload it first, then send the path the upload returned."
    if "Expected a `" in text:  # a component could not take the value (text into a number, NaN)
        value = re.search(r"was: (.{0,40}?)(?: \(of type|$)", text, re.S)
        shown = value.group(1).strip() if value else "a value"
        return f"{shown} cannot be used here: send a finite number where a number goes, text where text goes."
    log.exception("a call failed before or after its handler ran")
    return UNEXPECTED


def _choice_refusal(text: str, block_fn, inputs) -> str:
    """"'x' is not one of the choices for <label>." from Gradio's message, without its list of choices.

    The label is that of the input whose value holds 'x' (Gradio's message names no input).
    """
    found = re.match(r"Value: (.*?)(?: \(type: <class '[^']*'>\))? is not in the list of choices", text, re.S)
    raw = found.group(1) if found else ""
    try:  # a list value is shown as its repr ('x'), a single one as its str (x)
        value = ast.literal_eval(raw) if raw[:1] in "'\"" else raw
    except (ValueError, SyntaxError):
        value = raw
    shown = repr(value) if isinstance(value, str) else repr(str(value))
    shown = shown if len(shown) <= 60 else shown[:56] + "...'"
    for component, sent in zip(getattr(block_fn, "inputs", None) or [], inputs or []):
        sent = sent if isinstance(sent, list) else [sent]
        if getattr(component, "choices", None) and getattr(component, "label", None) \
                and (value in sent or str(value) in map(str, sent)):
            return f"{shown} is not one of the choices for {component.label}."
    return f"{shown} is not one of the choices offered here."


def build_app(engine: Engine, *, layout: DataLayout, access: Access = LOCAL,
              live_config: LiveConfig | None = None, server: ServerConfig | None = None) -> gr.Blocks:
    """The page for one posture (`webapp/access.py`): public servers get no Curate or Fine-tune tab.

    Every named endpoint is timed and counted (`webapp/ops.py`); uploads and results in
    Gradio's cache are deleted once older than `server.cache_max_age_s`.
    """
    live_config = live_config or load_live_config()
    server = server or load_server_config()
    rate_limit = RateLimit(server.rate_limit)
    with SignLensBlocks(title="SignLens", delete_cache=(server.cache_sweep_every_s, server.cache_max_age_s)) as app:
        gr.Markdown("# SignLens\nSign-language recognition with a vision-language model.")
        gr.Markdown(f"Access: **{access.posture}** — {access.reason}."
                    + ("" if access.curation else f"  \n{HOW_TO_ENABLE}"), elem_id="posture")
        status = gr.Markdown(status_markdown(engine.status()))
        with gr.Accordion("Settings", open=False):
            gr.Markdown("Read-only here: edit `assets/config/engine.yml` and `assets/config/live.yml` (or `SIGNLENS_*` variables) and restart.")
            gr.JSON(value=_public({"engine": engine.config.to_dict(), "live": dataclasses.asdict(live_config)}),
                    label="Active configuration")
        # Ticks while the model loads (and keeps ticking slowly so an adapter swap shows up).
        timer = gr.Timer(1.0)
        with gr.Tabs():
            with gr.Tab("Live", id="live"):
                build_live_tab(engine, live_config, layout=layout, rate_limit=rate_limit, access=access)
            with gr.Tab("Upload", id="upload"):
                build_upload_tab(engine, layout=layout, rate_limit=rate_limit, access=access)
            if access.curation:
                with gr.Tab("Curate", id="curate") as curate:
                    build_curate_tab(engine, layout, access=access)
                with gr.Tab("Fine-tune", id="finetune") as finetune:
                    build_finetune_tab(engine, layout, access=access)
        build_api(engine, rate_limit)
        if access.posture == "team":
            # Shown to admins only; their handlers check the role again on every call.
            def admin_tabs(request: gr.Request):
                visible = access.is_admin(request.username)
                return gr.Tab(visible=visible), gr.Tab(visible=visible)

            app.load(admin_tabs, outputs=[curate, finetune], api_visibility="private", queue=False,
                     show_progress="hidden")

        def refresh():
            current = engine.status()
            return status_markdown(current), gr.Timer(value=1.0 if current.state in ("idle", "loading") else 5.0)

        # On every page load too, so the header is never stale.
        app.load(refresh, outputs=[status, timer], api_name="status_load", api_visibility="private", queue=False, show_progress="hidden")
        timer.tick(refresh, outputs=[status, timer], api_name="status", api_visibility="private", queue=False, show_progress="hidden")
    app.server_config = server  # for `serve`: the upload limits join the launched server
    app.telemetry = Telemetry(engine, app)
    app.telemetry.instrument()
    return app


def _public(value):
    """A config as shown on the page: every string that is a server path becomes its name."""
    if isinstance(value, dict):
        return {key: _public(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_public(item) for item in value]
    return public_text(value) if isinstance(value, str) else value


def serve(
    app: gr.Blocks,
    engine: Engine,
    *,
    access: Access = LOCAL,
    host: str = "127.0.0.1",
    port: int = 7860,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
) -> gr.Blocks:
    """Queue and launch: bounded concurrency per group, uploads capped at the engine's limit.

    Then /healthz, /readyz and /metrics join the launched server, and its upload route
    gets the cache budget, the file count and (public or team) the rate limit
    (`webapp/cache.py`).
    """
    app.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    app.launch(
        server_name=host,
        server_port=port,
        max_file_size=int(engine.config.limits.max_file_mb * 1024 * 1024),
        prevent_thread_lock=prevent_thread_lock,
        show_error=False,
        quiet=quiet,
        auth=access.users.check if access.users is not None else None,
        auth_message="SignLens: log in with the name and password your admin gave you.",
        css=a11y.CSS,  # contrast, a visually hidden live region (webapp/a11y.py)
        head=a11y.HEAD,
    )
    add_routes(app, engine, app.telemetry)
    plain_413(app, engine.config.limits.max_file_mb)
    server = getattr(app, "server_config", None) or load_server_config()
    guard_uploads(app, server, max_file_mb=engine.config.limits.max_file_mb, rate_limited=access.posture != "local")
    if access.users is not None:
        throttle_logins(app, server.login_rate_limit)
    return app
