"""The public API: clean JSON endpoints over the engine, for `gradio_client` and curl.

The tabs' own events return UI widgets and are private; these endpoints have their
own invisible input components, exist only on the API page (`gr.on` with no triggers),
and return plain JSON:

    /recognize        one clip (+ trim seconds)  -> {gloss, confidence, top5, latency_ms, ...}
    /recognize_batch  many clips                 -> [one of the above, or {file, error}]
    /sentence         glosses ("I WANT DRINK")   -> an English sentence
    /model_info       nothing                    -> model status: device, dtype, state, ...

Errors of one clip in `/recognize` come back as the error sentence (`AppError` in
gradio_client); `/recognize_batch` keeps going and puts it in that file's entry.
"""

from __future__ import annotations

import re
from typing import Any

import gradio as gr

from engine import Engine, ModelNotReadyError, SignLensError
from webapp.common import (
    MODEL_CONCURRENCY,
    MODEL_GROUP,
    ClipFile,
    file_name,
    recognize_file,
    result_json,
    serve_engine,
    user_errors,
)
from training.dataset import check_gloss
from webapp.ops import RateLimit
from webapp.status import public_status


# Clips in one /recognize_batch call: each is seconds of model work on a CPU.
MAX_BATCH = 16


def build_api(engine: Engine, rate_limit: RateLimit) -> None:
    """Add the API endpoints; call inside the app's `gr.Blocks`."""
    serve_engine(engine)  # what /recognize and /recognize_batch use on a ZeroGPU Space (webapp/common.py)
    with gr.Column(visible=False):
        clip = ClipFile(label="clip", type="filepath")
        clips = ClipFile(label="clips", file_count="multiple", type="filepath")
        start_s = gr.Number(label="start_s", value=0)
        end_s = gr.Number(label="end_s", value=0)
        glosses = gr.Textbox(label="glosses")
        answer = gr.JSON(label="result")
        text = gr.Textbox(label="sentence")

    @user_errors
    def recognize(clip: str | None, start_s: float | None = 0, end_s: float | None = 0,
                  request: gr.Request = None) -> dict[str, Any]:
        """Recognize the sign in one clip or image; optional trim in seconds (0 = whole clip)."""
        rate_limit.check(request)
        if not clip:
            raise SignLensError("Send a clip or an image to recognize.")
        result, wall_ms = recognize_file(engine, clip, start_s, end_s)
        return result_json(result, file_name(clip), wall_ms)

    @user_errors
    def recognize_batch(clips: list[str] | None, start_s: float | None = 0, end_s: float | None = 0,
                        request: gr.Request = None) -> list[dict[str, Any]]:
        """Recognize each clip; a bad one gets {"file", "error"} and the others go on."""
        if clips and len(clips) > MAX_BATCH:
            raise SignLensError(f"Send at most {MAX_BATCH} clips in one call; this one had {len(clips)}.")
        rate_limit.check(request, cost=len(clips or []))  # each clip is a model call
        out = []
        for path in clips or []:
            try:
                result, wall_ms = recognize_file(engine, path, start_s, end_s)
                out.append(result_json(result, file_name(path), wall_ms))
            except ModelNotReadyError:
                raise
            except SignLensError as exc:
                out.append({"file": file_name(path), "error": str(exc)})
        return out

    @user_errors
    def sentence(glosses: str, request: gr.Request = None) -> str:
        """Turn glosses in signing order (separated by spaces or commas) into English."""
        rate_limit.check(request)
        if not isinstance(glosses, str):
            raise SignLensError("Send the glosses as text, such as I WANT DRINK.")
        if len(glosses) > 2000:
            raise SignLensError("That is too many glosses for one sentence: send at most 2,000 characters.")
        return engine.sentence([check_gloss(g) for g in re.split(r"[\s,]+", glosses) if g])

    def model_info() -> dict[str, Any]:
        """Model status: state (loading/ready/failed), device, dtype, quantization, memory, vocabulary, adapter."""
        return public_status(engine.status())

    model = dict(concurrency_id=MODEL_GROUP, concurrency_limit=MODEL_CONCURRENCY)
    gr.on([], recognize, inputs=[clip, start_s, end_s], outputs=answer, api_name="recognize", **model)
    gr.on([], recognize_batch, inputs=[clips, start_s, end_s], outputs=answer, api_name="recognize_batch", **model)
    gr.on([], sentence, inputs=[glosses], outputs=text, api_name="sentence", **model)
    gr.on([], model_info, inputs=None, outputs=answer, api_name="model_info", queue=False)
