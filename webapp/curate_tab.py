"""The Curate tab: choose the data, look at it, fix labels, add clips, download, build, export.

UI only. The work is `training.curate.actions.Curation` (which the command line uses
too); `Curator` holds the tab's event functions as plain methods so tests call them directly,
and `build_curate_tab` lays out the components and wires them, inside an open
`gr.Tab("Curate")`:

    with gr.Tab("Curate"):
        build_curate_tab(engine, layout)

Downloads and builds run in a background thread (one at a time, server-wide): Start
returns at once, a `gr.Timer` polls the progress, Stop sets the thread's cancel flag.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from engine import SignLensError, project_path
from training.curate import stats, wlasl
from training.curate.actions import Curation
from training.curate.download import DownloadConfig
from training.curate.plan import PlannedClip, load_instances, plan_rows
from training.dataset import SPLIT_RULES, USER_STATUSES, DatasetConfig, list_datasets, load_dataset_config
from training.errors import DatasetError
from training.layout import DataLayout
from webapp.access import LOCAL, Access
from webapp.common import current_blocks, datasets_if_changed, first_cell

CLIP_COLUMNS = ["clip", "gloss", "status", "source", "signer", "split", "file", "note"]
GLOSS_COLUMNS = ["gloss", "train", "val", "test", "total"]
ALL_WLASL = "all WLASL"
GLOSSARY_DIR = "assets/glossaries"


class Curator:
    """The tab's event functions over `training.curate.actions.Curation`.

    The selection arrives as (glossary, subset, sources, splits, statuses); everything a
    curator does to clips is the `Curation`'s, which the command line calls too.
    """

    def __init__(self, layout: DataLayout, *, engine_config: Any, base: DatasetConfig | None = None,
                 download_config: DownloadConfig | None = None) -> None:
        self.curation = Curation(layout, engine_config=engine_config, base=base, download_config=download_config)
        self.layout = layout
        self.base = self.curation.base
        # (label, value) of the glossary picker: the shipped glossaries, the configured one, all of WLASL.
        files = sorted(project_path(GLOSSARY_DIR).glob("*.txt"))
        self.glossaries = [(p.stem, f"{GLOSSARY_DIR}/{p.name}") for p in files]
        if self.base.glossary and self.base.glossary not in {v for _, v in self.glossaries}:
            self.glossaries.append((Path(self.base.glossary).stem, self.base.glossary))
        self.glossaries.append((ALL_WLASL + " glosses", ""))
        self._plots = Path(tempfile.mkdtemp(prefix="signlens-curate-"))

    # --- selection and stats ----------------------------------------------------------

    def config(self, glossary: str | None, subset: str | None, sources: list[str] | None, splits: str | None,
               statuses: list[str] | None, name: str | None = None) -> DatasetConfig:
        glossary = glossary or ""
        if glossary not in {value for _, value in self.glossaries}:
            raise DatasetError("Choose one of the listed glossaries.")
        return dataclasses.replace(
            self.base, glossary=glossary, subset="" if subset in (None, ALL_WLASL) else subset,
            sources=tuple(sources or ()), splits=splits or self.base.splits, user_statuses=tuple(statuses or ()),
            include_user_clips=bool(statuses), name=(name or self.base.name).strip())

    def stats(self, *selection):
        """Summary, plot and per-gloss table of the selection, and the glosses to search."""
        plan = self.curation.plan(self.config(*selection))
        included = plan.included()
        ready = sum(c.downloaded for c in included)
        counts = stats.compute_stats(plan_rows(plan))
        key = hashlib.sha256(repr(plan.config).encode()).hexdigest()[:12]
        plot = stats.plot_stats(counts, self._plots / f"selection-{key}.png", title="selection")
        lines = [f"**{len(included)} clips** selected for **{len(counts.by_gloss)} glosses** "
                 f"({ready} downloaded, {len(included) - ready} to download); "
                 f"{sum(c.status == 'pending' for c in plan.clips)} user clips wait for review."]
        if plan.missing_glosses:
            lines.append(f"{len(plan.missing_glosses)} glossary glosses have no clip: "
                         + ", ".join(plan.missing_glosses[:30]) + (" ..." if len(plan.missing_glosses) > 30 else ""))
        for split in ("val", "test"):
            if counts.glosses_without[split]:
                lines.append(f"{len(counts.glosses_without[split])} glosses have no {split} clip.")
        choices = plan.glosses()
        return ("  \n".join(lines), str(plot), stats.gloss_rows(counts),
                gr.Dropdown(choices=choices), gr.Dropdown(choices=choices), gr.Dropdown(choices=choices))

    # --- browse and edit --------------------------------------------------------------

    def clips(self, gloss: str | None, *selection) -> list[list[Any]]:
        """Every clip of one gloss (search is case-insensitive), excluded ones too."""
        wanted = (gloss or "").strip().lower() if isinstance(gloss, str) else ""
        if not wanted:
            raise DatasetError("Type or choose a gloss to browse its clips.")
        return [_clip_row(c) for c in self.curation.plan(self.config(*selection)).clips if c.gloss.lower() == wanted]

    def pending(self, *selection) -> list[list[Any]]:
        """The review queue: user clips (Upload/Live corrections) nobody accepted or excluded yet."""
        return [_clip_row(c) for c in self.curation.plan(self.config(*selection)).clips if c.status == "pending"]

    def preview(self, ref: str) -> tuple[str | None, str]:
        path, about = self.curation.preview(ref)
        return (self._servable(path) if path else None), about

    def relabel(self, ref: str, gloss: str | None, glossary: str | None = None) -> str:
        glossary = self._listed(glossary)
        message = self.curation.relabel(ref, gloss)
        return message + self.curation.outside_glossary((gloss or "").strip(), glossary)

    def add(self, video: str | None, gloss: str | None, glossary: str | None = None) -> str:
        glossary = self._listed(glossary)
        record = self.curation.add(video, gloss)
        return f"Added user:{record.id} as **{record.gloss}**." + self.curation.outside_glossary(record.gloss, glossary or "")

    # --- download, build, export ------------------------------------------------------

    def start_download(self, *selection) -> str:
        count = self.curation.start_download(self.config(*selection))
        return f"Download of {count} clips started."

    def start_import(self, folder: str | None) -> str:
        self.curation.start_import(folder if isinstance(folder, str) else None)
        return "Import started."

    def start_build(self, name: str | None, *selection) -> str:
        config = self.config(*selection, name=name)
        self.curation.start_build(config)
        return f"Build of dataset {config.name} started."

    def stop(self) -> str:
        return "Stopping..." if self.curation.job.stop() else "Nothing is running."

    def job_status(self) -> str:
        state = self.curation.job.snapshot()
        if not state.name:
            return "No download or build has run since the app started."
        percent = f" ({state.done / state.total:.0%})" if state.total else ""
        # Clips *processed*: a download that tried every clip and fetched none is not "100 %
        # done"; its first message line says what came of them.
        head = f"**{state.name}: {state.state}** — {state.done}/{state.total} clips processed{percent}, {state.elapsed_s:.0f} s"
        if not state.message:
            return head
        first, _, rest = state.message.partition("\n")
        return head + f"  \n{first}" + (f"\n```\n{rest.strip()}\n```" if rest.strip() else "")

    def datasets(self):
        names = list_datasets(self.layout)
        return gr.Dropdown(choices=names, value=names[0] if names else None)

    def export(self, name: str | None) -> str:
        return self._servable(self.curation.export(name))

    # --- helpers ----------------------------------------------------------------------

    def _listed(self, glossary: str | None) -> str:
        """One of the picker's glossaries, checked before anything is written (never any other file)."""
        if (glossary or "") not in {value for _, value in self.glossaries}:
            raise DatasetError("Choose one of the listed glossaries.")
        return glossary or ""

    def _servable(self, path: Path) -> str:
        """A file Gradio may copy into its cache and serve (the data root is never a static path).

        Gradio copies what a handler returns only from the working directory or the temp
        folder; a data root elsewhere gets a copy in this tab's own temp folder first (one
        per name, overwritten, so it does not grow).
        """
        path = Path(path).resolve()
        if any(path.is_relative_to(Path(root).resolve()) for root in (os.getcwd(), tempfile.gettempdir())):
            return str(path)
        copy = self._plots / path.name
        shutil.copyfile(path, copy)
        return str(copy)


def _clip_row(clip: PlannedClip) -> list[Any]:
    source = clip.source if clip.origin == "wlasl" else f"user ({clip.origin})"
    signer = "" if clip.signer_id < 0 else str(clip.signer_id)
    note = clip.note or ("" if clip.gloss == clip.original_gloss else f"relabelled from {clip.original_gloss}")
    return [clip.ref, clip.gloss, clip.status, source, signer, clip.split,
            "downloaded" if clip.downloaded else "missing", note]


def build_curate_tab(engine: Any, layout: DataLayout, *, access: Access = LOCAL, base: DatasetConfig | None = None,
                     download_config: DownloadConfig | None = None) -> Curator:
    """Lay out the Curate tab in the current `gr.Tab` context and wire its events.

    The engine gives the defaults: its vocabulary as the glossary (when it is a shipped
    one) and its frames per clip. Returns the `Curator` (tests drive it directly).
    """
    engine_config = engine.config
    base = base or load_dataset_config()
    vocabulary = engine_config.vocabulary_path().resolve()
    if vocabulary.parent == project_path(GLOSSARY_DIR).resolve():
        base = dataclasses.replace(base, glossary=f"{GLOSSARY_DIR}/{vocabulary.name}")
    curator = Curator(layout, base=base, engine_config=engine_config, download_config=download_config)
    base = curator.base
    errors = access.guard  # one sentence per error, and admins only (checked on every call)
    try:  # the glosses to search and label with, and the sites; "Show stats" refreshes them
        glosses = curator.curation.plan().glosses()
        sites = sorted({i.source for i in load_instances(base.metadata).all})
    except SignLensError:  # a broken metadata file: the page still loads, and each action says why
        glosses, sites = [], []

    gr.Markdown("Choose the data, check its balance, fix labels, add your own clips, then download and build "
                "a dataset for fine-tuning. Command line: `python -m training.curate --help`.")
    with gr.Row():
        glossary = gr.Dropdown(curator.glossaries, value=base.glossary, label="Glossary")
        subset = gr.Dropdown([ALL_WLASL, *wlasl.SUBSETS], value=base.subset or ALL_WLASL, label="WLASL subset")
        sources = gr.Dropdown(sites, value=list(base.sources),
                              multiselect=True, label="Sources (none = all)")
        splits = gr.Radio(list(SPLIT_RULES), value=base.splits, label="Splits",
                          info="signer: no signer in two splits")
        statuses = gr.CheckboxGroup(list(USER_STATUSES), value=list(base.user_statuses),
                                    label="Your clips to include")
    selection = [glossary, subset, sources, splits, statuses]
    show_stats = gr.Button("Show stats", variant="primary")
    summary = gr.Markdown()
    with gr.Row():
        plot = gr.Image(type="filepath", label="Clips per split, source, gloss, signer", interactive=False, scale=3)
        gloss_table = gr.Dataframe(headers=GLOSS_COLUMNS, label="Clips per gloss (fewest first)", interactive=False,
                                   max_height=420, scale=2)

    gr.Markdown("### Browse and review")
    with gr.Row():
        gloss = gr.Dropdown(glosses, value=None, allow_custom_value=True, label="Search a gloss", scale=3)
        browse = gr.Button("Show clips")
        review = gr.Button("Pending review")
    clip_table = gr.Dataframe(headers=CLIP_COLUMNS, label="Clips (click a row to preview)", interactive=False,
                              max_height=360)
    with gr.Row():
        with gr.Column():
            selected = gr.Textbox(label="Selected clip", placeholder="wlasl:<video_id> or user:<id>")
            player = gr.Video(label="Preview (as it will be built)", interactive=False, height=320)
            about = gr.Markdown()
        with gr.Column():
            new_gloss = gr.Dropdown(glosses, value=None, allow_custom_value=True, label="New gloss")
            with gr.Row():
                relabel = gr.Button("Relabel")
                accept = gr.Button("Accept")
                exclude = gr.Button("Exclude", variant="stop")
                restore = gr.Button("Restore")
            edited = gr.Markdown()
            recording = gr.Video(sources=["upload", "webcam"], label="Add your own clip (upload or record)")
            add_gloss = gr.Dropdown(glosses, value=None, allow_custom_value=True, label="Gloss of this clip")
            add = gr.Button("Add clip")

    gr.Markdown("### Download or import, build, export")
    with gr.Row():
        import_folder = gr.Textbox(label="Import WLASL videos you already have",
                                   placeholder="a folder on this server: <video_id>.mp4 files, or per-gloss folders of them",
                                   scale=3)
        start_import = gr.Button("Import", scale=1)
    with gr.Row():
        name = gr.Textbox(value=base.name, label="Dataset name")
        start_download = gr.Button("Start download")
        start_build = gr.Button("Build dataset", variant="primary")
        stop = gr.Button("Stop", variant="stop")
    job = gr.Markdown(curator.job_status())
    timer = gr.Timer(1.0)
    with gr.Row():
        built = gr.Dropdown(list_datasets(layout), label="Built dataset",
                            allow_custom_value=True)  # from disk; export checks the name
        refresh_built = gr.Button("Refresh list")
        export = gr.Button("Export (zip)")
        exported = gr.File(label="Export", interactive=False)

    show_stats.click(errors(curator.stats), selection, [summary, plot, gloss_table, gloss, new_gloss, add_gloss],
                     api_name="curate_stats")
    browse.click(errors(curator.clips), [gloss, *selection], clip_table, api_name="curate_clips")
    gloss.select(errors(curator.clips), [gloss, *selection], clip_table, api_name="curate_search")
    review.click(errors(curator.pending), selection, clip_table, api_name="curate_pending")
    clip_table.select(first_cell, None, selected, api_name="curate_select", api_visibility="private",
                      queue=False).then(errors(curator.preview), selected, [player, about],
                                        api_name="curate_select_preview", api_visibility="private")
    selected.submit(errors(curator.preview), selected, [player, about], api_name="curate_preview")
    relabel.click(errors(curator.relabel), [selected, new_gloss, glossary], edited, api_name="curate_relabel")
    for button, verb in ((accept, "accept"), (exclude, "exclude"), (restore, "restore")):
        button.click(errors(getattr(curator.curation, verb)), selected, edited, api_name=f"curate_{verb}")
    add_done = add.click(errors(curator.add), [recording, add_gloss, glossary], edited, api_name="curate_add_clip")
    start_download.click(errors(curator.start_download), selection, job, api_name="curate_download_start")
    start_import.click(errors(curator.start_import), import_folder, job, api_name="curate_import_start")
    start_build.click(errors(curator.start_build), [name, *selection], job, api_name="curate_build_start")
    stop.click(errors(curator.stop), None, job, api_name="curate_stop", queue=False)
    timer.tick(access.guard(curator.job_status, quiet=1), None, job, api_name="curate_job_status", queue=False,
               show_progress="hidden")
    refresh_built.click(errors(curator.datasets), None, built, api_name="curate_datasets")
    export.click(errors(curator.export), built, exported, api_name="curate_export")
    # Lists that follow the data: the built datasets on page load and when a build finishes
    # (the timer ticks anyway); a clip added is cleared from the form, so a second click
    # cannot add it twice.
    built_names = gr.State(None)
    gr.on([timer.tick, current_blocks().load], access.guard(functools.partial(datasets_if_changed, curator.layout), quiet=2), [built_names, built],
          [built, built_names],
          api_name="curate_datasets_watch", api_visibility="private", queue=False, show_progress="hidden")
    add_done.success(lambda: (None, None), None, [recording, add_gloss], api_name="curate_add_clear",
                     api_visibility="private", queue=False)
    return curator
