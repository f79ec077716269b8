"""Build a training dataset from WLASL downloads and the user's clips.

One config (``DatasetConfig``, YAML in ``assets/config/dataset.yml``) says which clips:
a glossary, an official subset, source sites, the split rule. ``plan_dataset`` turns it
into the list of clips with their gloss, split and status (curator edits applied);
``build_dataset`` trims, crops and shrinks every downloaded one (``training.clipcache``,
through the engine's own video code) and writes, atomically,

    data/datasets/<name>/dataset.jsonl   one row per clip: clip (relative), gloss, split,
                                         signer_id, source, video_id, frame_start,
                                         frame_end, bbox (where the clip came from), frames, fps
    data/datasets/<name>/clips/          the trimmed clips (hard links into the cache)
    data/datasets/<name>/config.json     the resolved config: rebuild with --config this file
    data/datasets/<name>/stats.json      counts per gloss/split/source/signer + build report
    data/datasets/<name>/stats.png       the same as a plot

The folder is built under a temporary name and renamed into place, so a failed or
stopped build leaves the previous dataset (or none), never half of one. Training reads
it back with ``load_dataset(...).frames(row)``, the engine's own ``load_clip``, and
``training.sft_data.ClipCollator`` builds the prompt with ``engine.prompt``: the inputs
inference sees.

    from training.dataset import DatasetConfig, build_dataset, load_dataset
    report = build_dataset(DatasetConfig(name="wlasl100", subset="WLASL100"))
    data = load_dataset("wlasl100")
    clip = data.frames(data.rows[0])             # engine.video.Clip, frames_per_clip frames
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import tempfile
import threading
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from engine.config import build_config, read_config_file
from training.atomic import atomic_path
from training import edits as edits_store
from training import stats as stats_mod
from training import userdata, wlasl

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASET_CONFIG = ROOT / "assets" / "config" / "dataset.yml"
GLOSSARY_DIR = ROOT / "assets" / "glossaries"
WLASL_LICENCE = wlasl.ASSET_DIR / "C-UDA-1.0.pdf"
SPLIT_RULES = ("official", "signer")
USER_STATUSES = ("pending", "accepted")  # "excluded" never goes into a dataset
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class DatasetError(ValueError):
    """A dataset request that cannot be done; the message is one sentence for the user."""


class BuildCancelled(DatasetError):
    """The build was stopped before it finished; nothing was written."""


@dataclass(frozen=True)
class DatasetConfig:
    # Folder name under <data>/datasets/: letters, digits, ".", "_", "-", so it can only
    # ever name a folder there.
    name: str = "signlens"
    # Glossary file (the engine's format); only its glosses are kept. Relative paths are
    # from the repository root; "" keeps every WLASL gloss.
    glossary: str = "assets/glossaries/asl_core_320.txt"
    # Official subset (WLASL100/300/1000/2000) or an nslt_*.json path; "" = all of WLASL.
    subset: str = ""
    # WLASL source sites to keep ("aslpro", "signingsavvy", ...); empty keeps all.
    sources: tuple[str, ...] = ()
    # "official": WLASL's split, which shares signers between train and test (optimistic);
    # "signer": re-split so no signer is in two splits (what a new user experiences).
    splits: str = "official"
    # (train, val, test) shares of clips for splits="signer"; met approximately.
    split_fractions: tuple[float, ...] = (0.8, 0.1, 0.1)
    # Seeds the signer split and the max_clips_per_gloss choice: same config, same dataset.
    seed: int = 0
    # Frames training samples from each clip; 0 = the engine's video.frames_per_clip,
    # resolved and saved in config.json. Clips themselves keep every frame of the span.
    frames_per_clip: int = 0
    # Crop to WLASL's signer box as the engine does (engine video.crop_to_bbox): hands
    # fill more of the model's tile.
    crop_to_bbox: bool = True
    # Longest side of a stored clip in pixels; 448 is the model's tile, so nothing the
    # vision tower could see is lost (see training/clipcache.py for the measurement).
    max_side: int = 448
    # Add the user's clips (Upload/Live corrections, Curate recordings) as source "user".
    include_user_clips: bool = True
    # Which of them: reviewed ones by default; add "pending" to use unreviewed corrections.
    user_statuses: tuple[str, ...] = ("accepted",)
    # The split the user's clips go to (they have no signer id to split by).
    user_split: str = "train"
    # At most this many clips of one gloss in each split (0 = no cap), chosen with seed
    # among downloaded ones: tames the few glosses with far more clips than the rest.
    max_clips_per_gloss: int = 0
    # WLASL metadata (WLASL_v0.3.json[.gz]); "" = the copy shipped in assets/wlasl/.
    metadata: str = ""
    # Clips encoded in parallel (PyAV releases the GIL while decoding and encoding).
    workers: int = 2

    def __post_init__(self) -> None:
        bad: dict[str, Any] = {}
        if not _NAME.fullmatch(self.name):
            bad["name"] = self.name
        if self.splits not in SPLIT_RULES:
            bad["splits"] = self.splits
        if (len(self.split_fractions) != 3 or any(f < 0 for f in self.split_fractions)
                or abs(sum(self.split_fractions) - 1) > 1e-6):
            bad["split_fractions"] = self.split_fractions
        if not 0 <= self.frames_per_clip <= 64:
            bad["frames_per_clip"] = self.frames_per_clip
        if not 16 <= self.max_side <= 4096:
            bad["max_side"] = self.max_side
        if not set(self.user_statuses) <= set(USER_STATUSES):
            bad["user_statuses"] = self.user_statuses
        if self.user_split not in wlasl.SPLITS:
            bad["user_split"] = self.user_split
        if self.max_clips_per_gloss < 0:
            bad["max_clips_per_gloss"] = self.max_clips_per_gloss
        if self.workers < 1:
            bad["workers"] = self.workers
        if bad:
            raise DatasetError(
                f"Invalid dataset config values {bad}: name is letters/digits/._- (max 64), splits is "
                f"{' or '.join(SPLIT_RULES)}, split_fractions are three shares summing to 1, frames_per_clip "
                f"0-64, max_side 16-4096, user_statuses from {USER_STATUSES}, user_split one of "
                f"{wlasl.SPLITS}, max_clips_per_gloss >= 0, workers >= 1.")

    def glossary_path(self) -> Path | None:
        if not self.glossary:
            return None
        path = Path(self.glossary)
        return path if path.is_absolute() else ROOT / path

    def resolved(self, engine_config=None) -> "DatasetConfig":
        """The config with engine defaults filled in (what config.json records)."""
        if self.frames_per_clip:
            return self
        if engine_config is None:
            from engine.config import load_config

            engine_config = load_config()
        return dataclasses.replace(self, frames_per_clip=engine_config.video.frames_per_clip)


def load_dataset_config(path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None) -> DatasetConfig:
    """YAML (or a built dataset's config.json) in, ``overrides`` on top; unknown keys are an error."""
    path = Path(path) if path else DEFAULT_DATASET_CONFIG
    raw = read_config_file(path, DatasetError)
    if isinstance(raw.get("dataset"), dict) and "rows" in raw:
        raw = raw["dataset"]  # a dataset's config.json: rebuild exactly that dataset
    merged = {**raw, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return build_config(DatasetConfig, merged, str(path), DatasetError)


# --- plan: which clips, with which gloss and split ------------------------------------

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


_metadata_cache: dict[tuple[str, int], list[wlasl.WlaslInstance]] = {}
_cache_lock = threading.Lock()


def load_instances(metadata: str = "") -> list[wlasl.WlaslInstance]:
    """WLASL instances, parsed once per file version (the UI asks often; parsing takes ~0.3 s)."""
    path = Path(metadata) if metadata else wlasl.DEFAULT_METADATA
    if not path.is_absolute():
        path = ROOT / path
    key = (str(path), path.stat().st_mtime_ns if path.exists() else 0)
    with _cache_lock:
        if key not in _metadata_cache:
            _metadata_cache.clear()
            _metadata_cache[key] = wlasl.load_wlasl(path)
        return _metadata_cache[key]


def read_glossary(config: DatasetConfig) -> tuple[str, ...] | None:
    path = config.glossary_path()
    if path is None:
        return None
    from engine.vocabulary import VocabularyError, load_vocabulary

    try:
        return load_vocabulary(path).glosses
    except VocabularyError as exc:
        raise DatasetError(str(exc)) from None


def videos_dir(data_root: Path) -> Path:
    return Path(data_root) / "wlasl" / "videos"


def download_manifest(data_root: Path) -> Path:
    return Path(data_root) / "wlasl" / "manifest.jsonl"


def plan_dataset(config: DatasetConfig, data_root: Path | None = None, *,
                 instances: Sequence[wlasl.WlaslInstance] | None = None) -> Plan:
    """Every clip the config selects, excluded ones too (listed so they can be restored)."""
    data_root = Path(data_root) if data_root is not None else userdata.default_data_root()
    glossary = read_glossary(config)
    if instances is None:
        instances = load_instances(config.metadata)
    originals = {inst.video_id: inst.gloss for inst in instances}
    edited, excluded = edits_store.apply_edits(instances, edits_store.read_edits(data_root))
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
    present = _downloaded_names(data_root)
    for inst in chosen:
        file = f"wlasl/videos/{inst.filename}"
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
    for user in userdata.read_clips(data_root):
        downloaded, note = _present(data_root, user.clip)
        included = config.include_user_clips and user.status in config.user_statuses
        if user.status == "excluded":
            note = "excluded by a curator"
        elif not config.include_user_clips:
            note = "user clips are off in this config"
        elif not included:
            note = f"status {user.status} is not in user_statuses {list(config.user_statuses)}"
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


def _downloaded_names(data_root: Path) -> set[str]:
    """File names in the download folder that are usable: one directory scan, not 20,000 stats.

    Plain files count; a link counts only if it resolves inside the data root.
    """
    try:
        folder = userdata.resolve_inside(data_root, "wlasl/videos")
        entries = list(os.scandir(folder))
    except (userdata.UserDataError, OSError):
        return set()
    names = set()
    for entry in entries:
        if entry.is_file(follow_symlinks=False):
            names.add(entry.name)
        elif entry.is_symlink() and _present(data_root, f"wlasl/videos/{entry.name}")[0]:
            names.add(entry.name)
    return names


def _present(data_root: Path, relative: str) -> tuple[bool, str]:
    try:
        path = userdata.resolve_inside(data_root, relative)
    except userdata.UserDataError:
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


# --- build ----------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildReport:
    folder: Path
    rows: int
    # Included clips whose video is not downloaded: they are left out, not an error.
    missing: int
    # (ref, reason) of clips whose video could not be used (damaged, span out of range...).
    skipped: tuple[tuple[str, str], ...]
    # Clips taken from the cache / encoded now.
    cached: int
    encoded: int
    seconds: float

    def summary(self) -> str:
        lines = [f"{self.rows} clips written to {self.folder} in {self.seconds:.1f} s "
                 f"({self.encoded} encoded, {self.cached} from the cache)"]
        if self.missing:
            lines.append(f"{self.missing} selected clips are not downloaded yet and were left out")
        for ref, reason in self.skipped[:20]:
            lines.append(f"skipped {ref}: {reason}")
        if len(self.skipped) > 20:
            lines.append(f"... and {len(self.skipped) - 20} more skipped (see stats.json)")
        return "\n".join(lines)


def datasets_dir(data_root: Path) -> Path:
    return Path(data_root) / "datasets"


def dataset_folder(data_root: Path, name: str) -> Path:
    if not _NAME.fullmatch(name or ""):
        raise DatasetError(f"{name!r} is not a dataset name: use letters, digits, '.', '_' and '-'.")
    return datasets_dir(data_root) / name


def list_datasets(data_root: Path | None = None) -> list[str]:
    root = datasets_dir(data_root or userdata.default_data_root())
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if _NAME.fullmatch(p.name) and (p / "dataset.jsonl").is_file() and not p.is_symlink())


def build_dataset(
    config: DatasetConfig,
    data_root: Path | None = None,
    *,
    instances: Sequence[wlasl.WlaslInstance] | None = None,
    engine_config=None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    show_progress: bool = True,
) -> BuildReport:
    """Build ``<data>/datasets/<config.name>/`` from the plan's downloaded, included clips.

    A clip that cannot be used is skipped with its reason (the build goes on); any other
    error, or ``cancel`` being set, leaves no new folder and the previous dataset intact.
    """
    from engine.errors import ClipError
    from training.clipcache import cached_clip, link_or_copy

    started = time.monotonic()
    data_root = Path(data_root) if data_root is not None else userdata.default_data_root()
    config = config.resolved(engine_config)
    final = dataset_folder(data_root, config.name)
    plan = plan_dataset(config, data_root, instances=instances)
    todo = [c for c in plan.included() if c.downloaded]
    missing = sum(1 for c in plan.included() if not c.downloaded)
    if not todo:
        raise DatasetError(f"No clips to build: {missing} clips are selected and none is downloaded yet; "
                           "download them first." if missing else
                           "No clips to build: the glossary, subset and sources select nothing.")
    cache_dir = Path(data_root) / "cache" / "clips"
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(final)
    temp = Path(tempfile.mkdtemp(prefix=f".{config.name}.building-{os.getpid()}-", dir=final.parent))
    os.chmod(temp, 0o755)  # mkdtemp makes it private; a dataset is meant to be shared

    def work(clip: PlannedClip):
        if cancel is not None and cancel.is_set():
            return None
        source = userdata.resolve_inside(data_root, clip.file)
        try:
            path, info, hit = cached_clip(cache_dir, source, frame_start=clip.frame_start, frame_end=clip.frame_end,
                                          bbox=clip.bbox if config.crop_to_bbox else None, max_side=config.max_side)
        except ClipError as exc:
            return clip, None, str(exc), False
        name = f"clips/{clip.video_id}.mp4"
        link_or_copy(path, temp / name)
        return clip, {**_row(clip, name), "frames": info.frames, "fps": round(info.fps, 3),
                      "width": info.width, "height": info.height}, "", hit

    rows: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    cached = 0
    bar = tqdm(total=len(todo), desc=f"dataset {config.name}", unit="clip", disable=not show_progress)
    if progress is not None:
        progress(0, len(todo))
    executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="dataset-build")
    try:
        futures = [executor.submit(work, clip) for clip in todo]
        for done, future in enumerate(futures, 1):
            result = future.result()
            if result is None or (cancel is not None and cancel.is_set()):
                raise BuildCancelled("The build was stopped; no dataset was written and the previous one is kept.")
            clip, row, reason, hit = result
            if row is None:
                skipped.append((clip.ref, reason))
            else:
                rows.append(row)
                cached += hit
            bar.update(1)
            if progress is not None:
                progress(done, len(todo))
        if not rows:
            raise DatasetError(f"None of the {len(todo)} downloaded clips could be used; "
                               f"the first reason: {skipped[0][1]}")
        report = BuildReport(folder=final, rows=len(rows), missing=missing, skipped=tuple(skipped), cached=cached,
                             encoded=len(rows) - cached, seconds=time.monotonic() - started)
        _write_outputs(temp, config, plan, rows, report)
        _publish(temp, final)
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        executor.shutdown(wait=True)
        bar.close()
    return dataclasses.replace(report, seconds=time.monotonic() - started)


def _row(clip: PlannedClip, name: str) -> dict[str, Any]:
    return {"clip": name, "gloss": clip.gloss, "split": clip.split, "signer_id": clip.signer_id,
            "source": clip.source, "video_id": clip.video_id, "frame_start": clip.frame_start,
            "frame_end": clip.frame_end, "bbox": list(clip.bbox) if clip.bbox else None, "origin": clip.origin}


def _write_outputs(folder: Path, config: DatasetConfig, plan: Plan, rows: list[dict], report: BuildReport) -> None:
    with open(folder / "dataset.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    stats = stats_mod.compute_stats(rows)
    resolved = {
        "dataset": dataclasses.asdict(config),
        "rows": len(rows),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "row_format": "clip is relative to this folder and already trimmed to frame_start..frame_end "
                      "(1-based, -1 = end) and cropped to bbox of the source video: load it whole",
    }
    (folder / "config.json").write_text(json.dumps(resolved, indent=2, ensure_ascii=False))
    build = {"rows": report.rows, "missing": report.missing, "cached": report.cached, "encoded": report.encoded,
             "skipped": [{"ref": r, "reason": why} for r, why in report.skipped],
             "glosses_without_clips": list(plan.missing_glosses)}
    (folder / "stats.json").write_text(json.dumps({**stats.to_dict(), "build": build}, indent=1, ensure_ascii=False))
    stats_mod.plot_stats(stats, folder / "stats.png", title=config.name)
    if any(row["origin"] == "wlasl" for row in rows) and WLASL_LICENCE.is_file():
        shutil.copyfile(WLASL_LICENCE, folder / "WLASL-LICENCE-C-UDA-1.0.pdf")  # C-UDA: keep it with any copy


def _remove_leftovers(final: Path) -> None:
    """Clean up after builds of this name whose process died (killed, power cut).

    The pid in the folder name tells a dead build from one still running in another
    process. A half-built folder is deleted; an old dataset moved aside by a publish that
    died before the new one was in place is put back.
    """
    for path in final.parent.glob(f".{final.name}.*-*"):
        kind, _, rest = path.name[len(final.name) + 2:].partition("-")
        if kind not in ("building", "old") or not rest.split("-")[0].isdigit():
            continue
        try:
            os.kill(int(rest.split("-")[0]), 0)
        except ProcessLookupError:
            if kind == "old" and not final.exists():
                os.rename(path, final)
            else:
                shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def _publish(temp: Path, final: Path) -> None:
    """Rename the finished folder into place; an old dataset is moved aside first, then deleted.

    Linux cannot swap two directories in one rename; in the instant between the two
    renames the old dataset sits at ``.<name>.old-*`` and is still whole.
    """
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}"
        os.rename(final, old)
    os.rename(temp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- read back, export ----------------------------------------------------------------

@dataclass(frozen=True)
class Dataset:
    folder: Path
    config: DatasetConfig
    rows: tuple[dict[str, Any], ...]

    def split(self, name: str) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["split"] == name]

    def clip_path(self, row: Mapping[str, Any]) -> Path:
        try:
            return userdata.resolve_inside(self.folder, row["clip"])
        except userdata.UserDataError:
            raise DatasetError(f"Row clip {row['clip']!r} points outside the dataset folder.") from None

    def frames(self, row: Mapping[str, Any], *, limits=None):
        """The frames the model sees for this row: the engine's own sampling of the whole clip."""
        from engine.config import LimitsConfig
        from engine.video import load_clip

        return load_clip(self.clip_path(row), num_frames=self.config.frames_per_clip, limits=limits or LimitsConfig())


def load_dataset(name_or_folder: str | Path, data_root: Path | None = None) -> Dataset:
    """A built dataset by name (under ``<data>/datasets/``) or by folder path."""
    folder = Path(name_or_folder)
    if not (folder / "dataset.jsonl").is_file():
        folder = dataset_folder(data_root or userdata.default_data_root(), str(name_or_folder))
    if not (folder / "dataset.jsonl").is_file():
        raise DatasetError(f"No dataset at {folder}: build it first (python -m training.curate build).")
    config = load_dataset_config(folder / "config.json")
    rows = tuple(json.loads(line) for line in (folder / "dataset.jsonl").read_text(encoding="utf-8").splitlines()
                 if line.strip())
    return Dataset(folder=folder, config=config, rows=rows)


def export_dataset(name: str, data_root: Path | None = None) -> Path:
    """Zip ``<data>/datasets/<name>/`` to ``<data>/exports/<name>.zip`` (temp file, then rename).

    Only regular files inside the dataset folder go in; links are not followed. Clips are
    stored, not deflated: mp4 does not compress further.
    """
    data_root = Path(data_root) if data_root is not None else userdata.default_data_root()
    folder = dataset_folder(data_root, name)
    if not (folder / "dataset.jsonl").is_file() or folder.is_symlink():
        raise DatasetError(f"There is no built dataset named {name}; build it first.")
    exports = Path(data_root) / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    target = exports / f"{name}.zip"
    with atomic_path(target) as temp, zipfile.ZipFile(temp, "w") as archive:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for filename in sorted(filenames):
                path = Path(dirpath) / filename
                if path.is_symlink() or not path.is_file():
                    continue
                stored = path.suffix.lower() in (".mp4", ".png", ".pdf")
                archive.write(path, f"{name}/{path.relative_to(folder).as_posix()}",
                              compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return target
