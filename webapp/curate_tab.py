"""The Curate tab: choose the data, look at it, fix labels, add clips, download, build, export.

UI only. The work is in `training/` (plan, build, edits, downloads, background jobs);
`Curator` holds the tab's event functions as plain methods so tests call them directly,
and `build_curate_tab` lays out the components and wires them, inside an open
`gr.Tab("Curate")`:

    with gr.Tab("Curate"):
        build_curate_tab(engine, data_root)

Downloads and builds run in a background thread (one at a time, server-wide): Start
returns at once, a `gr.Timer` polls the progress, Stop sets the thread's cancel flag.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from training import dataset, download, edits, stats, userdata, wlasl
from training.dataset import DatasetConfig, DatasetError
from training.download_config import DownloadConfig
from training.jobs import BackgroundJob
from training.userdata import UserDataError
from webapp.common import user_errors

CLIP_COLUMNS = ["clip", "gloss", "status", "source", "signer", "split", "file", "note"]
GLOSS_COLUMNS = ["gloss", "train", "val", "test", "total"]
ALL_WLASL = "all WLASL"
NO_CLIP = "Choose a clip in the table first."


class Curator:
    """The tab's event functions; the selection arrives as (glossary, subset, sources, splits, statuses)."""

    def __init__(self, data_root: Path, *, base: DatasetConfig | None = None, engine_config: Any = None,
                 download_config: DownloadConfig | None = None) -> None:
        self.data_root = Path(data_root).resolve()
        self.base = base or dataset.load_dataset_config()
        self.download_config = download_config or DownloadConfig()
        self.engine_config = engine_config
        self.job = BackgroundJob(expected_errors=(DatasetError, UserDataError))
        # (label, value) of the glossary picker: the shipped glossaries, the configured one, all of WLASL.
        files = sorted(dataset.GLOSSARY_DIR.glob("*.txt"))
        self.glossaries = [(p.stem, p.relative_to(dataset.ROOT).as_posix()) for p in files]
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

    def plan(self, *selection) -> dataset.Plan:
        return dataset.plan_dataset(self.config(*selection), self.data_root)

    def stats(self, *selection):
        """Summary, plot and per-gloss table of the selection, and the glosses to search."""
        plan = self.plan(*selection)
        included = plan.included()
        ready = sum(c.downloaded for c in included)
        counts = stats.compute_stats(dataset.plan_rows(plan))
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
        wanted = (gloss or "").strip().lower()
        if not wanted:
            raise DatasetError("Type or choose a gloss to browse its clips.")
        return [_clip_row(c) for c in self.plan(*selection).clips if c.gloss.lower() == wanted]

    def pending(self, *selection) -> list[list[Any]]:
        """The review queue: user clips (Upload/Live corrections) nobody accepted or excluded yet."""
        return [_clip_row(c) for c in self.plan(*selection).clips if c.status == "pending"]

    def preview(self, ref: str) -> tuple[str | None, str]:
        """A WLASL clip as it will be built (trimmed, cropped), or the user's clip as recorded."""
        from training.clipcache import cached_clip

        kind, ident = _parse_ref(ref)
        if kind == "user":
            clip = self._user_clip(ident)
            path = userdata.resolve_inside(self.data_root, clip.clip)
            if not path.is_file():
                return None, f"The file of user:{ident} is missing from the data folder."
            return str(path), f"{clip.source} clip, labelled **{clip.gloss}** ({clip.status})" + (
                f"; the model had said {clip.predicted} ({clip.confidence:.0%})" if clip.predicted else "")
        inst = self._instance(ident)
        source = userdata.resolve_inside(self.data_root, f"wlasl/videos/{inst.filename}")
        if not source.is_file():
            return None, f"WLASL {ident} is not downloaded yet: start a download to see it."
        path, info, _ = cached_clip(self.data_root / "cache" / "clips", source, frame_start=inst.frame_start,
                                    frame_end=inst.frame_end, bbox=inst.bbox if self.base.crop_to_bbox else None,
                                    max_side=self.base.max_side)
        return str(path), (f"WLASL {ident} from {inst.source}, signer {inst.signer_id}: frames "
                           f"{inst.frame_start}..{inst.frame_end} ({info.frames} frames at {info.fps:g} fps), as built")

    def relabel(self, ref: str, gloss: str | None, glossary: str | None = None) -> str:
        gloss = (gloss or "").strip()
        if not gloss:
            raise UserDataError("Choose the new gloss before relabelling.")
        kind, ident = _parse_ref(ref)
        if kind == "user":
            userdata.update_clip(self.data_root, ident, gloss=gloss)
        else:
            edits.set_edit(self.data_root, ident, original_gloss=self._instance(ident).gloss, gloss=gloss)
        return f"{ref} is now labelled **{gloss}**." + self._outside_glossary(gloss, glossary)

    def set_status(self, ref: str, status: str) -> str:
        """status: "excluded", "accepted" (user clips) or "restored" (back to included / pending review)."""
        kind, ident = _parse_ref(ref)
        if kind == "user":
            userdata.update_clip(self.data_root, ident, status="pending" if status == "restored" else status)
        elif status == "accepted":
            raise UserDataError("WLASL clips need no review; accept is for your own clips.")
        else:
            edits.set_edit(self.data_root, ident, original_gloss=self._instance(ident).gloss,
                           excluded=status == "excluded")
        return f"{ref} {status}."

    def add(self, video: str | None, gloss: str | None, glossary: str | None = None) -> str:
        """A curator's own clip: stored and accepted at once (the curator is the reviewer)."""
        if not video:
            raise UserDataError("Upload or record a clip first.")
        record = userdata.add_clip(self.data_root, video, gloss or "", source="curate", status="accepted")
        return f"Added user:{record.id} as **{record.gloss}**." + self._outside_glossary(record.gloss, glossary)

    # --- download, build, export ------------------------------------------------------

    def start_download(self, *selection) -> str:
        wanted = [c for c in self.plan(*selection).included() if c.origin == "wlasl"]
        if not wanted:
            raise DatasetError("The selection holds no WLASL clips to download.")

        def task(progress, cancel) -> str:
            summary = download.download_instances(
                wanted, dataset.videos_dir(self.data_root), config=self.download_config,
                manifest_path=dataset.download_manifest(self.data_root), progress=progress, cancel=cancel,
                show_progress=False)
            return summary.format_summary()

        self.job.start("download", task)
        return f"Download of {len(wanted)} clips started."

    def start_build(self, name: str | None, *selection) -> str:
        config = self.config(*selection, name=name)

        def task(progress, cancel) -> str:
            return dataset.build_dataset(config, self.data_root, engine_config=self.engine_config,
                                         progress=progress, cancel=cancel, show_progress=False).summary()

        self.job.start("build", task)
        return f"Build of dataset {config.name} started."

    def stop(self) -> str:
        return "Stopping..." if self.job.stop() else "Nothing is running."

    def job_status(self) -> str:
        state = self.job.snapshot()
        if not state.name:
            return "No download or build has run since the app started."
        percent = f" ({state.done / state.total:.0%})" if state.total else ""
        head = f"**{state.name}: {state.state}** — {state.done}/{state.total} clips{percent}, {state.elapsed_s:.0f} s"
        body = f"\n```\n{state.message}\n```" if state.message else ""
        return head + body

    def datasets(self):
        names = dataset.list_datasets(self.data_root)
        return gr.Dropdown(choices=names, value=names[0] if names else None)

    def export(self, name: str | None) -> str:
        if not name:
            raise DatasetError("Choose a built dataset to export.")
        return str(dataset.export_dataset(name, self.data_root))

    # --- helpers ----------------------------------------------------------------------

    def _instance(self, video_id: str) -> wlasl.WlaslInstance:
        for inst in dataset.load_instances(self.base.metadata):
            if inst.video_id == video_id:
                return inst
        raise DatasetError(f"There is no WLASL clip {video_id}.")

    def _user_clip(self, clip_id: str) -> userdata.UserClip:
        for clip in userdata.read_clips(self.data_root):
            if clip.id == clip_id:
                return clip
        raise UserDataError(f"No clip with id {clip_id} in the user data.")

    def _outside_glossary(self, gloss: str, glossary: str | None) -> str:
        config = dataclasses.replace(self.base, glossary=glossary or "")
        known = dataset.read_glossary(config)
        if known is not None and gloss.lower() not in {g.lower() for g in known}:
            return f" Note: {gloss} is not in this glossary, so datasets built with it leave the clip out."
        return ""


def _parse_ref(ref: str | None) -> tuple[str, str]:
    """"wlasl:<video_id>" or "user:<id>": both ids must be plain file-name stems."""
    kind, _, ident = (ref or "").strip().partition(":")
    if kind not in ("wlasl", "user") or not ident:
        raise UserDataError(NO_CLIP)
    try:
        wlasl.clip_filename(ident)  # no "/", "\\", leading "." : nothing that could walk out of a folder
    except ValueError:
        raise UserDataError("That clip id is not valid.") from None
    return kind, ident


def _clip_row(clip: dataset.PlannedClip) -> list[Any]:
    source = clip.source if clip.origin == "wlasl" else f"user ({clip.origin})"
    signer = "" if clip.signer_id < 0 else str(clip.signer_id)
    note = clip.note or ("" if clip.gloss == clip.original_gloss else f"relabelled from {clip.original_gloss}")
    return [clip.ref, clip.gloss, clip.status, source, signer, clip.split,
            "downloaded" if clip.downloaded else "missing", note]


def build_curate_tab(engine: Any, data_root: Path, *, base: DatasetConfig | None = None,
                     download_config: DownloadConfig | None = None) -> Curator:
    """Lay out the Curate tab in the current `gr.Tab` context and wire its events.

    The engine gives the defaults: its vocabulary as the glossary (when it is a shipped
    one) and its frames per clip. Returns the `Curator` (tests drive it directly).
    """
    engine_config = engine.config
    base = base or dataset.load_dataset_config()
    vocabulary = engine_config.vocabulary_path().resolve()
    if vocabulary.parent == dataset.GLOSSARY_DIR.resolve():
        base = dataclasses.replace(base, glossary=vocabulary.relative_to(dataset.ROOT.resolve()).as_posix())
    curator = Curator(data_root, base=base, engine_config=engine_config, download_config=download_config)
    root = curator.data_root
    # Clips, previews and exports are served from where they are (no copy into Gradio's
    # cache, whatever the data root's location); only these folders, never the whole root.
    gr.set_static_paths([root / "cache" / "clips", root / "user" / "clips", root / "exports"])
    base = curator.base
    errors = user_errors
    try:  # the glosses to search and label with, before "Show stats" refreshes them
        glosses = dataset.plan_dataset(base, root).glosses()
    except (DatasetError, UserDataError, OSError):
        glosses = []

    gr.Markdown("Choose the data, check its balance, fix labels, add your own clips, then download and build "
                "a dataset for fine-tuning. Command line: `python -m training.curate --help`.")
    with gr.Row():
        glossary = gr.Dropdown(curator.glossaries, value=base.glossary, label="Glossary")
        subset = gr.Dropdown([ALL_WLASL, *wlasl.SUBSETS], value=base.subset or ALL_WLASL, label="WLASL subset")
        sources = gr.Dropdown(sorted({i.source for i in dataset.load_instances(base.metadata)}), value=list(base.sources),
                              multiselect=True, label="Sources (none = all)")
        splits = gr.Radio(list(dataset.SPLIT_RULES), value=base.splits, label="Splits",
                          info="signer: no signer in two splits")
        statuses = gr.CheckboxGroup(list(dataset.USER_STATUSES), value=list(base.user_statuses),
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

    gr.Markdown("### Download, build, export")
    with gr.Row():
        name = gr.Textbox(value=base.name, label="Dataset name")
        start_download = gr.Button("Start download")
        start_build = gr.Button("Build dataset", variant="primary")
        stop = gr.Button("Stop", variant="stop")
    job = gr.Markdown(curator.job_status())
    timer = gr.Timer(1.0)
    with gr.Row():
        built = gr.Dropdown(dataset.list_datasets(root), label="Built dataset")
        refresh_built = gr.Button("Refresh list")
        export = gr.Button("Export (zip)")
        exported = gr.File(label="Export", interactive=False)

    def row_selected(evt: gr.SelectData) -> str:
        return (evt.row_value or [""])[0]

    show_stats.click(errors(curator.stats), selection, [summary, plot, gloss_table, gloss, new_gloss, add_gloss],
                     api_name="curate_stats")
    browse.click(errors(curator.clips), [gloss, *selection], clip_table, api_name="curate_clips")
    gloss.select(errors(curator.clips), [gloss, *selection], clip_table, api_name="curate_search")
    review.click(errors(curator.pending), selection, clip_table, api_name="curate_pending")
    clip_table.select(row_selected, None, selected, api_name="curate_select", api_visibility="private",
                      queue=False).then(errors(curator.preview), selected, [player, about],
                                        api_name="curate_select_preview", api_visibility="private")
    selected.submit(errors(curator.preview), selected, [player, about], api_name="curate_preview")
    relabel.click(errors(curator.relabel), [selected, new_gloss, glossary], edited, api_name="curate_relabel")
    for button, status, api in ((accept, "accepted", "accept"), (exclude, "excluded", "exclude"),
                                (restore, "restored", "restore")):
        button.click(errors(functools.partial(curator.set_status, status=status)), selected, edited,
                     api_name=f"curate_{api}")
    add.click(errors(curator.add), [recording, add_gloss, glossary], edited, api_name="curate_add_clip")
    start_download.click(errors(curator.start_download), selection, job, api_name="curate_download_start")
    start_build.click(errors(curator.start_build), [name, *selection], job, api_name="curate_build_start")
    stop.click(curator.stop, None, job, api_name="curate_stop", queue=False)
    timer.tick(curator.job_status, None, job, api_name="curate_job_status", queue=False, show_progress="hidden")
    refresh_built.click(curator.datasets, None, built, api_name="curate_datasets")
    export.click(errors(curator.export), built, exported, api_name="curate_export")
    return curator
