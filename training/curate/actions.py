"""What a curator does to clips, for the Curate tab and the command line alike.

    curation = Curation(layout, engine_config=config)
    curation.relabel("wlasl:07069", "drink")     # WLASL clips: an edit in data/wlasl/edits.json
    curation.exclude("user:1f2e3d4c5b6a")         # the user's clips: their manifest
    curation.restore(ref); curation.accept(ref)
    path, about = curation.preview(ref)           # the clip as it will be built

A clip is named by a reference, "wlasl:<video_id>" or "user:<id>" (the `ref` of a
`PlannedClip`). WLASL instances are looked up in an index built once per metadata file,
not by scanning its ~21,000 instances per request. Downloads and builds run one at a
time in a background thread (`BackgroundJob`) so a server keeps answering meanwhile.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from training.curate import edits, userdata, wlasl
from training.curate.build import build_dataset, export_dataset
from training.curate.clipcache import cached_clip
from training.curate.download import DownloadConfig, download_instances
from training.curate.jobs import BackgroundJob, TaskOutcome
from training.curate.plan import Plan, load_instances, plan_dataset, read_glossary
from training.dataset import DatasetConfig, load_dataset_config
from training.errors import DatasetError, UserDataError
from training.layout import DataLayout

NO_CLIP = "Choose a clip first: its reference looks like wlasl:<video_id> or user:<id>."


def parse_ref(ref: str | None) -> tuple[str, str]:
    """("wlasl" | "user", id) of a clip reference; both ids must be plain file-name stems."""
    kind, _, ident = (ref or "").strip().partition(":")
    if kind not in ("wlasl", "user") or not ident:
        raise UserDataError(NO_CLIP)
    try:
        wlasl.clip_filename(ident)  # no "/", "\\", leading "." : nothing that could walk out of a folder
    except ValueError:
        raise UserDataError("That clip reference is not valid.") from None
    return kind, ident


class Curation:
    def __init__(self, layout: DataLayout, *, engine_config, base: DatasetConfig | None = None,
                 download_config: DownloadConfig | None = None) -> None:
        self.layout = layout
        self.engine_config = engine_config
        self.base = base or load_dataset_config()
        self.download_config = download_config or DownloadConfig()
        self.job = BackgroundJob()

    # --- looking --------------------------------------------------------------------

    def plan(self, config: DatasetConfig | None = None) -> Plan:
        return plan_dataset(config or self.base, self.layout)

    def preview(self, ref: str) -> tuple[Path | None, str]:
        """A WLASL clip as it will be built (trimmed, cropped), or the user's clip as recorded."""
        kind, ident = parse_ref(ref)
        if kind == "user":
            clip = userdata.find_clip(self.layout, ident)
            path = self.layout.inside(clip.clip)
            if not path.is_file():
                return None, f"The file of user:{ident} is missing from the data folder."
            return path, f"{clip.source} clip, labelled **{clip.gloss}** ({clip.status})" + (
                f"; the model had said {clip.predicted} ({clip.confidence:.0%})" if clip.predicted else "")
        inst = self._instance(ident)
        source = self.layout.videos / inst.filename
        if not source.is_file():
            return None, f"WLASL {ident} is not downloaded yet: download or import it to see it."
        path, info, _ = cached_clip(self.layout.clip_cache, source, frame_start=inst.frame_start,
                                    frame_end=inst.frame_end, bbox=inst.bbox if self.base.crop_to_bbox else None,
                                    max_side=self.base.max_side)
        return path, (f"WLASL {ident} from {inst.source}, signer {inst.signer_id}: frames "
                      f"{inst.frame_start}..{inst.frame_end} ({info.frames} frames at {info.fps:g} fps), as built")

    def outside_glossary(self, gloss: str, glossary: str | None = None) -> str:
        """A note when `gloss` is not in the glossary (the configured one unless given): such clips are left out."""
        config = self.base if glossary is None else dataclasses.replace(self.base, glossary=glossary)
        known = read_glossary(config)
        if known is not None and gloss.lower() not in {g.lower() for g in known}:
            return f" Note: {gloss} is not in this glossary, so datasets built with it leave the clip out."
        return ""

    # --- editing --------------------------------------------------------------------

    def relabel(self, ref: str, gloss: str | None) -> str:
        kind, ident = parse_ref(ref)
        if kind == "user":
            gloss = userdata.update_clip(self.layout, ident, gloss=gloss or "").gloss
        else:
            gloss = edits.set_edit(self.layout, ident, original_gloss=self._instance(ident).gloss,
                                   gloss=gloss or "").gloss or self._instance(ident).gloss
        return f"{ref} is now labelled **{gloss}**."

    def exclude(self, ref: str) -> str:
        return self._set_excluded(ref, True)

    def restore(self, ref: str) -> str:
        """Back in: a WLASL clip included again, a user's clip back to pending review."""
        return self._set_excluded(ref, False)

    def accept(self, ref: str) -> str:
        kind, ident = parse_ref(ref)
        if kind != "user":
            raise UserDataError("WLASL clips need no review; accept is for your own clips.")
        userdata.update_clip(self.layout, ident, status="accepted")
        return f"{ref} accepted."

    def add(self, video: str | Path | None, gloss: str | None) -> userdata.UserClip:
        """A curator's own clip: stored and accepted at once (the curator is the reviewer)."""
        if not video:
            raise UserDataError("Upload or record a clip first.")
        return userdata.add_clip(self.layout, video, gloss or "", source="curate", status="accepted")

    # --- download, build, export ------------------------------------------------------

    def start_download(self, config: DatasetConfig | None = None) -> int:
        """Download the selection's WLASL clips in the background; returns how many are asked for."""
        wanted = [c for c in self.plan(config).included() if c.origin == "wlasl"]
        if not wanted:
            raise DatasetError("The selection holds no WLASL clips to download.")

        def task(progress, cancel) -> TaskOutcome:
            summary = download_instances(wanted, self.layout.videos, config=self.download_config,
                                         manifest_path=self.layout.download_manifest, progress=progress,
                                         cancel=cancel, show_progress=False)
            state, sentence = summary.outcome()
            return TaskOutcome(state, sentence + "\n\n" + summary.format_summary())

        self.job.start("download", task)
        return len(wanted)

    def start_import(self, folder: str | None) -> None:
        """Import WLASL videos from a folder on this machine in the background (`importer.py`)."""
        from training.curate.importer import import_videos, source_folder

        if not folder or not str(folder).strip():
            raise DatasetError("Type the folder on this server that holds your WLASL videos.")
        source = source_folder(folder)  # said now, not when the background job starts

        def task(progress, cancel) -> str:
            return import_videos(source, self.layout, load_instances(self.base.metadata), progress=progress,
                                 cancel=cancel).summary()

        self.job.start("import", task)

    def start_build(self, config: DatasetConfig) -> None:
        def task(progress, cancel) -> str:
            return build_dataset(config, self.layout, engine_config=self.engine_config, progress=progress,
                                 cancel=cancel, show_progress=False).summary()

        self.job.start("build", task)

    def export(self, name: str | None) -> Path:
        if not name:
            raise DatasetError("Choose a built dataset to export.")
        return export_dataset(name, self.layout)

    # --- helpers ----------------------------------------------------------------------

    def _instance(self, video_id: str) -> wlasl.WlaslInstance:
        return load_instances(self.base.metadata).get(video_id)

    def _set_excluded(self, ref: str, excluded: bool) -> str:
        kind, ident = parse_ref(ref)
        if kind == "user":
            userdata.update_clip(self.layout, ident, status="excluded" if excluded else "pending")
        else:
            edits.set_edit(self.layout, ident, original_gloss=self._instance(ident).gloss, excluded=excluded)
        return f"{ref} {'excluded' if excluded else 'restored'}."
