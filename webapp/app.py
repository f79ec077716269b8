"""The Gradio Blocks app. UI only: every action calls the engine."""

from __future__ import annotations

import dataclasses

import gradio as gr

from engine import Engine
from webapp.status import status_markdown


def build_app(engine: Engine) -> gr.Blocks:
    def model_info() -> dict:
        return dataclasses.asdict(engine.status())

    with gr.Blocks(title="SignLens") as app:
        gr.Markdown("# SignLens\nSign-language recognition with a vision-language model.")
        status = gr.Markdown(status_markdown(engine.status()))
        info = gr.JSON(visible=False)
        timer = gr.Timer(2.0)
        timer.tick(lambda: status_markdown(engine.status()), outputs=status, api_visibility="private")
        app.load(model_info, outputs=info, api_name="model_info")
    return app
