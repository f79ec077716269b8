"""The Upload tab: drop clips or images, see the top-5 and the frames the model saw.

One file shows its result; several give a table too (a bad file gets its error sentence
in its row and the others go on). "Correct this" copies a clip into the user dataset
(`training/curate/userdata.py`) under the gloss the user picks, for the Curate tab to review.
UI only: the work is `engine.recognize` and `userdata.add_clip`.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from engine import Engine, ModelNotReadyError, SignLensError, project_path
from training.curate.userdata import add_clip
from training.layout import DataLayout
from webapp.access import LOCAL, Access
from webapp.api import MAX_BATCH
from webapp.ops import RateLimit
from webapp.common import (
    MODEL_CONCURRENCY,
    MODEL_GROUP,
    ClipFile,
    file_name,
    current_blocks,
    outside_vocabulary,
    recognize_file,
    serve_engine,
    thumbnails,
    timings_markdown,
    user_errors,
    vocabulary_choices,
)

SAMPLES = project_path("assets/samples")
FILE_TYPES = ["video", "image", ".mp4", ".webm", ".mov", ".avi", ".mkv"]
TABLE_HEADERS = ["file", "gloss", "confidence", "2nd", "3rd", "ms", "error"]


def build_upload_tab(engine: Engine, *, layout: DataLayout, rate_limit: RateLimit, access: Access = LOCAL) -> None:
    """The tab's components and events; call inside `with gr.Tab(...)`."""
    serve_engine(engine)  # what its recognitions use on a ZeroGPU Space (webapp/common.py)
    # One entry per file of the last run: name, path, top predictions, thumbnails, timings.
    results = gr.State([])
    with gr.Row():
        with gr.Column(scale=1):
            files = ClipFile(label="Clips or images (mp4, webm, mov, avi, png, jpg)", file_count="multiple", file_types=FILE_TYPES, type="filepath")
            with gr.Row():
                start = gr.Number(label="Trim start (s)", info="0: from the start", minimum=0, value=0)
                end = gr.Number(label="Trim end (s)", info="0: to the end", minimum=0, value=0)
            run = gr.Button("Recognize", variant="primary")
            examples = sorted(p for p in SAMPLES.glob("generated-*") if p.is_file())
            if examples:
                gr.Examples(
                    examples=[[[str(p)]] for p in examples],
                    inputs=[files],
                    label="Examples — generated clips of a cartoon signer, not real signs",
                )
        with gr.Column(scale=1):
            label = gr.Label(num_top_classes=5, label="Top 5", elem_id="upload-top5")
            timings = gr.Markdown()
            gallery = gr.Gallery(label="Frames the model saw", elem_id="upload-frames", columns=4, height="auto", format="jpeg")
    table = gr.Dataframe(headers=TABLE_HEADERS, elem_id="upload-table", label="All files", interactive=False, visible=False, wrap=True)
    # Saving a clip writes data: off on a public server, admins only on a team one.
    with gr.Accordion("Correct this", open=False, visible=access.curation) as correct_box:
        gr.Markdown("Wrong answer? Pick the right gloss: the clip is saved to your data for the Curate tab to review.")
        with gr.Row():
            which = gr.Dropdown(label="File", choices=[], interactive=True)
            gloss = gr.Dropdown(
                label="Right gloss",
                choices=list(engine.vocabulary.glosses),
                value=None,
                allow_custom_value=True,
                filterable=True,
                interactive=True,
            )
            save = gr.Button("Save to my data")
        saved = gr.Markdown()

    shown = [label, gallery, timings, gloss]

    @user_errors
    def recognize(paths: list[str] | None, start_s: float | None, end_s: float | None, request: gr.Request = None,
                  progress=gr.Progress()):
        paths = list(paths or [])
        if len(paths) > MAX_BATCH:
            raise SignLensError(f"Drop at most {MAX_BATCH} files at a time; these were {len(paths)}.")
        rate_limit.check(request, cost=len(paths))  # each file is a model call
        if not paths:
            raise SignLensError("Drop a clip or an image first.")
        entries: list[dict[str, Any]] = []
        for path in progress.tqdm(paths, desc="Recognizing") if len(paths) > 1 else paths:
            try:
                result, wall_ms = recognize_file(engine, path, start_s, end_s)
            except ModelNotReadyError:
                raise
            except SignLensError as exc:
                if len(paths) == 1:
                    raise
                entries.append({"name": file_name(path), "path": path, "error": str(exc)})
                continue
            entries.append(
                {
                    "name": file_name(path),
                    "path": path,
                    "top": [(p.gloss, p.probability) for p in result.top],
                    "thumbnails": thumbnails(result.clip.frames),
                    "timings": timings_markdown(result, wall_ms),
                    "wall_ms": wall_ms,
                    "error": "",
                }
            )
        good = [e["name"] for e in entries if not e["error"]]
        first = next((e for e in entries if not e["error"]), None)
        rows = [_row(e) for e in entries]
        return (
            entries,
            *_show(first),
            gr.Dataframe(value=rows, visible=len(entries) > 1),
            gr.Dropdown(choices=good, value=good[0] if good else None),
            "",
        )

    def show_file(entries: list[dict[str, Any]], name: str | None):
        entry = next((e for e in entries if e["name"] == name and not e["error"]), None)
        return _show(entry) if entry else tuple(gr.skip() for _ in shown)

    def select_row(entries: list[dict[str, Any]], event: gr.SelectData):
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if not 0 <= row < len(entries) or entries[row]["error"]:
            return (gr.skip(),) * (len(shown) + 1)
        return (*_show(entries[row]), entries[row]["name"])

    @access.guard
    def correct(entries: list[dict[str, Any]], name: str | None, right: str | None) -> str:
        entry = next((e for e in entries if e["name"] == name and not e["error"]), None)
        if entry is None:
            raise SignLensError("Recognize a clip first, then choose the file to correct.")
        predicted, confidence = entry["top"][0]
        right = (right or "").strip()
        saved = entry.setdefault("saved", [])  # the session's state: a second click saves no second copy
        if right.lower() in saved:
            return f"**{entry['name']}** is already saved as **{right}**; it waits in Curate for review."
        record = add_clip(layout, entry["path"], right, source="upload", predicted=predicted, confidence=confidence)
        saved.append(record.gloss.lower())
        return (f"Saved **{entry['name']}** as **{record.gloss}** (was {predicted}, {confidence:.0%}); it waits in Curate "
                "for review." + outside_vocabulary(engine, record.gloss))

    run.click(
        recognize,
        inputs=[files, start, end],
        outputs=[results, *shown, table, which, saved],
        api_name="upload_recognize",
        api_visibility="private",
        concurrency_id=MODEL_GROUP,
        concurrency_limit=MODEL_CONCURRENCY,
    )
    which.input(show_file, inputs=[results, which], outputs=shown, api_name="upload_show", api_visibility="private", queue=False)
    table.select(select_row, inputs=[results], outputs=[*shown, which], api_name="upload_select", api_visibility="private", queue=False)
    save.click(correct, inputs=[results, which, gloss], outputs=[saved], api_name="upload_correct", api_visibility="private", concurrency_limit=None)
    # The gloss picker follows the vocabulary: an adapter (de)activated in Fine-tune changes it.
    gr.on([correct_box.expand, current_blocks().load], lambda: vocabulary_choices(engine), None, gloss,
          api_name="upload_glosses", api_visibility="private", queue=False, show_progress="hidden")


def _show(entry: dict[str, Any] | None) -> tuple:
    """Values for (label, gallery, timings, gloss) showing one file's result."""
    if entry is None:
        return None, None, "", None
    top = {gloss: round(probability, 4) for gloss, probability in entry["top"]}
    return top, entry["thumbnails"], entry["timings"], entry["top"][0][0]


def _row(entry: dict[str, Any]) -> list[Any]:
    if entry["error"]:
        return [entry["name"], "", None, "", "", None, entry["error"]]
    top = entry["top"] + [("", 0.0)] * 3
    return [entry["name"], top[0][0], round(top[0][1], 3), top[1][0], top[2][0], round(entry["wall_ms"]), ""]
