"""Which clips a dataset config selects: WLASL instances and the user's clips, edits applied.

``plan_dataset`` turns a ``DatasetConfig`` into every clip it selects, with its gloss,
split and status (curator edits applied, excluded clips listed too so they can be
restored); ``training.curate.build`` then builds the downloaded, included ones. The
Curate tab, the CLI and the build all read this one plan, so they never disagree.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine import VocabularyError, load_vocabulary, project_path
from training.curate import edits as edits_store
from training.curate import userdata, wlasl
from training.dataset import DatasetConfig
from training.errors import DatasetError, UserDataError
from training.layout import DataLayout


@dataclass(frozen=True)
class PlannedClip:
    # How the CLI and the UI name a clip: "wlasl:<video_id>" or "user:<id>".
    ref: str
    gloss: str
    split: str
    # WLASL source site, or "user".
    source: str
    # -1 for the user's clips (no signer id is recorded for them).
    signer_id: int
    video_id: str
    frame_start: int
    frame_end: int
    bbox: tuple[int, int, int, int] | None
    # The source video, relative to the data root (it may not be downloaded yet).
    file: str
    url: str
    # WLASL clips: "included" | "excluded"; user clips: "pending" | "accepted" | "excluded".
    status: str
    # The source file is there (downloaded / stored) and inside the data root.
    downloaded: bool
    # The config takes it (status, user_statuses, glossary, cap); built if also downloaded.
    included: bool
    # Why it is not included, or anything else a curator should know.
    note: str
    # "wlasl", or the user clip's origin: "upload" | "live" | "curate".
    origin: str
    # WLASL's own label (relabelling back to it drops the edit).
    original_gloss: str


@dataclass(frozen=True)
class Plan:
    config: DatasetConfig
    clips: tuple[PlannedClip, ...]
    # Glossary glosses that no clip shows (not in WLASL's selection, no user clip).
    missing_glosses: tuple[str, ...]

    def included(self) -> list[PlannedClip]:
        return [c for c in self.clips if c.included]

    def glosses(self) -> list[str]:
        return sorted({c.gloss for c in self.clips} | set(self.missing_glosses))


@dataclass(frozen=True)
class Instances:
    """WLASL's instances in file order, and the same by video id (built once per file version)."""

    all: tuple[wlasl.WlaslInstance, ...]
    by_id: dict[str, wlasl.WlaslInstance]

    def get(self, video_id: str) -> wlasl.WlaslInstance:
        try:
            return self.by_id[video_id]
        except KeyError:
            raise DatasetError(f"There is no WLASL clip {video_id[:40]}.") from None


_metadata_cache: dict[tuple[str, int], Instances] = {}
_cache_lock = threading.Lock()


def load_instances(metadata: str = "") -> Instances:
    """WLASL instances, parsed once per file version (the UI asks often; parsing takes ~0.3 s)."""
    path = project_path(metadata) if metadata else wlasl.DEFAULT_METADATA
    key = (str(path), path.stat().st_mtime_ns if path.exists() else 0)
    with _cache_lock:
        if key not in _metadata_cache:
            instances = tuple(wlasl.load_wlasl(path))
            _metadata_cache.clear()
            _metadata_cache[key] = Instances(instances, {inst.video_id: inst for inst in instances})
        return _metadata_cache[key]


def read_glossary(config: DatasetConfig) -> tuple[str, ...] | None:
    path = config.glossary_path()
    if path is None:
        return None
    try:
        return load_vocabulary(path).glosses
    except VocabularyError as exc:
        raise DatasetError(str(exc)) from None


def plan_dataset(config: DatasetConfig, layout: DataLayout, *,
                 instances: Sequence[wlasl.WlaslInstance] | None = None) -> Plan:
    """Every clip the config selects, excluded ones too (listed so they can be restored)."""
    glossary = read_glossary(config)
    if instances is None:
        instances = load_instances(config.metadata).all
    originals = {inst.video_id: inst.gloss for inst in instances}
    edited, excluded = edits_store.apply_edits(instances, edits_store.read_edits(layout))
    try:
        chosen = wlasl.filter_instances(edited, glossary=glossary, subset=config.subset or None,
                                        sources=config.sources or None)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    kept = [inst for inst in chosen if inst.video_id not in excluded]
    if config.splits == "signer" and kept:
        resplit = {inst.video_id: inst for inst in
                   wlasl.signer_independent_split(kept, seed=config.seed, fractions=config.split_fractions)}
        chosen = [resplit.get(inst.video_id, inst) for inst in chosen]

    clips: list[PlannedClip] = []
    present = _downloaded_names(layout)
    for inst in chosen:
        file = layout.relative(layout.videos / inst.filename)
        downloaded = inst.filename in present
        note = "" if downloaded else "not downloaded"
        is_excluded = inst.video_id in excluded
        clips.append(PlannedClip(
            ref=f"wlasl:{inst.video_id}", gloss=inst.gloss, split=inst.split, source=inst.source,
            signer_id=inst.signer_id, video_id=inst.video_id, frame_start=inst.frame_start,
            frame_end=inst.frame_end, bbox=inst.bbox, file=file, url=inst.url,
            status="excluded" if is_excluded else "included", downloaded=downloaded,
            included=not is_excluded, note="excluded by a curator" if is_excluded else note,
            origin="wlasl", original_gloss=originals[inst.video_id]))

    gloss_set = None if glossary is None else {g.lower() for g in glossary}
    for user in userdata.read_clips(layout):
        downloaded, note = _present(layout, user.clip)
        included = config.include_user_clips and user.status in config.user_statuses
        if user.status == "excluded":
            note = "excluded by a curator"
        elif not config.include_user_clips:
            note = "user clips are off in this config"
        elif not included:
            wanted = " or ".join(config.user_statuses) or "none"
            note = (f"{user.status} clips are left out: this selection includes your {wanted} clips "
                    f"(tick {user.status} under 'Your clips to include' to use it)")
        if gloss_set is not None and user.gloss.lower() not in gloss_set:
            included, note = False, "its gloss is not in the glossary"
        clips.append(PlannedClip(
            ref=f"user:{user.id}", gloss=user.gloss, split=config.user_split, source="user", signer_id=-1,
            video_id=f"user-{user.id}", frame_start=1, frame_end=-1, bbox=None, file=user.clip, url="",
            status=user.status, downloaded=downloaded, included=included, note=note,
            origin=user.source, original_gloss=user.gloss))

    if config.max_clips_per_gloss:
        clips = _cap_per_gloss(clips, config.max_clips_per_gloss, config.seed)
    shown = {c.gloss.lower() for c in clips}
    missing = tuple(g for g in glossary or () if g.lower() not in shown)
    return Plan(config=config, clips=tuple(clips), missing_glosses=missing)


def _downloaded_names(layout: DataLayout) -> set[str]:
    """File names in the download folder that are usable: one directory scan, not 20,000 stats.

    Plain files count; a link counts only if it resolves inside the data root.
    """
    try:
        entries = list(os.scandir(layout.videos))
    except OSError:
        return set()
    names = set()
    for entry in entries:
        if entry.is_file(follow_symlinks=False):
            names.add(entry.name)
        elif entry.is_symlink() and _present(layout, layout.relative(layout.videos / entry.name))[0]:
            names.add(entry.name)
    return names


def _present(layout: DataLayout, relative: str) -> tuple[bool, str]:
    try:
        path = layout.inside(relative)
    except UserDataError:
        return False, "its file is outside the data folder"
    return path.is_file(), "" if path.is_file() else "not downloaded"


def _cap_per_gloss(clips: list[PlannedClip], cap: int, seed: int) -> list[PlannedClip]:
    """Keep ``cap`` included clips per (gloss, split): downloaded ones first, then seeded order."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, clip in enumerate(clips):
        if clip.included:
            groups[(clip.gloss, clip.split)].append(i)
    rng = random.Random(seed)
    dropped: set[int] = set()
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        members.sort(key=lambda i: not clips[i].downloaded)  # stable: keeps the seeded order
        dropped.update(members[cap:])
    return [dataclasses.replace(c, included=False, note=f"over max_clips_per_gloss={cap}") if i in dropped else c
            for i, c in enumerate(clips)]


def plan_rows(plan: Plan, *, downloaded_only: bool = False) -> list[dict[str, Any]]:
    """The included clips as stats rows (gloss, split, source, signer_id)."""
    return [{"gloss": c.gloss, "split": c.split, "source": c.source, "signer_id": c.signer_id}
            for c in plan.included() if c.downloaded or not downloaded_only]
