"""The Gradio Blocks app. UI only: every event calls a function of `engine` or `training`.

    app = build_app(engine, layout=DataLayout.at())
    serve(app, engine, host="127.0.0.1", port=7860)

Layout: a status header (model state, device, vocabulary, adapter; refreshed while it
changes), then one tab per task, each in its own module, and the API endpoints
(`webapp/api.py`). The page is served while the model loads; a call before it is ready
gets the engine's "The model is still loading; try again in a moment."
"""

from __future__ import annotations

import dataclasses

import gradio as gr

from engine import Engine, LiveConfig, load_live_config
from training.layout import DataLayout
from webapp import a11y
from webapp.api import build_api
from webapp.curate_tab import build_curate_tab
from webapp.finetune_tab import build_finetune_tab
from webapp.live import build_live_tab
from webapp.status import status_markdown
from webapp.upload import build_upload_tab

# Events waiting in the queue at most; beyond it a caller is told the app is busy
# rather than waiting minutes behind a CPU model.
QUEUE_SIZE = 64


def build_app(engine: Engine, *, layout: DataLayout, live_config: LiveConfig | None = None) -> gr.Blocks:
    live_config = live_config or load_live_config()
    with gr.Blocks(title="SignLens") as app:
        gr.Markdown("# SignLens\nSign-language recognition with a vision-language model.")
        status = gr.Markdown(status_markdown(engine.status()))
        with gr.Accordion("Settings", open=False):
            gr.Markdown("Read-only here: edit `assets/config/engine.yml` and `assets/config/live.yml` (or `SIGNLENS_*` variables) and restart.")
            gr.JSON(value={"engine": engine.config.to_dict(), "live": dataclasses.asdict(live_config)}, label="Active configuration")
        # Ticks while the model loads (and keeps ticking slowly so an adapter swap shows up).
        timer = gr.Timer(1.0)
        with gr.Tabs():
            with gr.Tab("Live", id="live"):
                build_live_tab(engine, live_config, layout=layout)
            with gr.Tab("Upload", id="upload"):
                build_upload_tab(engine, layout=layout)
            with gr.Tab("Curate", id="curate"):
                build_curate_tab(engine, layout)
            with gr.Tab("Fine-tune", id="finetune"):
                build_finetune_tab(engine, layout)
        build_api(engine)

        def refresh():
            current = engine.status()
            return status_markdown(current), gr.Timer(value=1.0 if current.state in ("idle", "loading") else 5.0)

        # On every page load too, so the header is never stale.
        app.load(refresh, outputs=[status, timer], api_name="status_load", api_visibility="private", queue=False, show_progress="hidden")
        timer.tick(refresh, outputs=[status, timer], api_name="status", api_visibility="private", queue=False, show_progress="hidden")
    return app


def serve(
    app: gr.Blocks,
    engine: Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
) -> gr.Blocks:
    """Queue and launch: bounded concurrency per group, uploads capped at the engine's limit."""
    app.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    app.launch(
        server_name=host,
        server_port=port,
        max_file_size=int(engine.config.limits.max_file_mb * 1024 * 1024),
        prevent_thread_lock=prevent_thread_lock,
        show_error=False,
        quiet=quiet,
        css=a11y.CSS,  # contrast, a visually hidden live region (webapp/a11y.py)
        head=a11y.HEAD,
    )
    return app
