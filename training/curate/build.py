"""Build a dataset folder from a plan: trim, crop and shrink every clip, then publish it whole.

``build_dataset`` takes the plan's downloaded, included clips, turns each into a
training clip through ``training.curate.clipcache`` (the engine's own video code) and
writes the folder that ``training.dataset`` describes. The folder is built under a
temporary name and renamed into place, so a failed or stopped build leaves the previous
dataset (or none), never half of one. ``export_dataset`` zips a built one.

    from training.curate.build import build_dataset
    report = build_dataset(DatasetConfig(name="wlasl100", subset="WLASL100"), layout, engine_config=config)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from tqdm import tqdm

from engine import SignLensError
from training.atomic import atomic_path, process_alive
from training.curate import stats as stats_mod
from training.curate import wlasl
from training.curate.clipcache import cached_clip, link_or_copy
from training.curate.plan import Plan, PlannedClip, plan_dataset
from training.dataset import CONFIG_FILE, ROWS_FILE, STATS_FILE, STATS_PLOT, DatasetConfig, dataset_folder, is_built
from training.errors import BuildCancelled, DatasetError
from training.layout import DataLayout

WLASL_LICENCE = wlasl.ASSET_DIR / "C-UDA-1.0.pdf"
log = logging.getLogger(__name__)


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
    # The splits that hold clips (train/val/test order): a missing val or test is said at
    # build time, not found when Evaluate fails after training.
    splits: tuple[str, ...] = ("train", "val", "test")

    def missing_splits(self) -> list[str]:
        return [s for s in ("val", "test") if s not in self.splits]

    def summary(self) -> str:
        lines = [f"{self.rows} clips written to dataset {self.folder.name} in {self.seconds:.1f} s "
                 f"({self.encoded} encoded, {self.cached} from the cache)"]
        if self.missing:
            lines.append(f"{self.missing} selected clips are not downloaded yet and were left out")
        if self.missing_splits():
            missing = " and ".join(self.missing_splits())
            lines.append(f"Warning: no {missing} clips, so {'this dataset cannot be evaluated' if 'test' in missing else 'training has no validation loss'}"
                         f" (its splits: {', '.join(self.splits) or 'none'}). Download more clips, or choose the "
                         "signer split rule, and build again.")
        for ref, reason in self.skipped[:20]:
            lines.append(f"skipped {ref}: {reason}")
        if len(self.skipped) > 20:
            lines.append(f"... and {len(self.skipped) - 20} more skipped (see stats.json)")
        return "\n".join(lines)


def build_dataset(
    config: DatasetConfig,
    layout: DataLayout,
    *,
    engine_config,
    instances: Sequence[wlasl.WlaslInstance] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    show_progress: bool = True,
) -> BuildReport:
    """Build ``<data>/datasets/<config.name>/`` from the plan's downloaded, included clips.

    A clip that cannot be used is skipped with its reason (the build goes on); any other
    error, or ``cancel`` being set, leaves no new folder and the previous dataset intact.
    """
    started = time.monotonic()
    config = config.resolved(engine_config)
    final = dataset_folder(layout, config.name)
    plan = plan_dataset(config, layout, instances=instances)
    todo = [c for c in plan.included() if c.downloaded]
    missing = sum(1 for c in plan.included() if not c.downloaded)
    if not todo:
        raise DatasetError(f"No clips to build: {missing} clips are selected and none is downloaded yet; "
                           "download them first." if missing else
                           "No clips to build: the glossary, subset and sources select nothing.")
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(final)
    temp = Path(tempfile.mkdtemp(prefix=f".{config.name}.building-{os.getpid()}-", dir=final.parent))
    os.chmod(temp, 0o755)  # mkdtemp makes it private; a dataset is meant to be shared

    def work(clip: PlannedClip):
        if cancel is not None and cancel.is_set():
            return None
        source = layout.inside(clip.file)
        try:
            path, info, hit = cached_clip(layout.clip_cache, source, frame_start=clip.frame_start, frame_end=clip.frame_end,
                                          bbox=clip.bbox if config.crop_to_bbox else None, max_side=config.max_side)
        except SignLensError as exc:
            return clip, None, str(exc), False
        except (av.error.FFmpegError, AttributeError, IndexError, ValueError):
            # One unreadable clip never breaks the build: skipped, and logged for us. A full
            # disk (OSError) is not the clip's fault and stops the build.
            log.exception("clip %s could not be prepared", clip.ref)
            return clip, None, "it could not be read as a video", False
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
                             encoded=len(rows) - cached, seconds=time.monotonic() - started,
                             splits=tuple(s for s in ("train", "val", "test") if any(r["split"] == s for r in rows)))
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
    with open(folder / ROWS_FILE, "w", encoding="utf-8") as handle:
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
    (folder / CONFIG_FILE).write_text(json.dumps(resolved, indent=2, ensure_ascii=False))
    build = {"rows": report.rows, "missing": report.missing, "cached": report.cached, "encoded": report.encoded,
             "skipped": [{"ref": r, "reason": why} for r, why in report.skipped],
             "glosses_without_clips": list(plan.missing_glosses)}
    (folder / STATS_FILE).write_text(json.dumps({**stats.to_dict(), "build": build}, indent=1, ensure_ascii=False))
    stats_mod.plot_stats(stats, folder / STATS_PLOT, title=config.name)
    if any(row["origin"] == "wlasl" for row in rows) and WLASL_LICENCE.is_file():
        shutil.copyfile(WLASL_LICENCE, folder / "WLASL-LICENCE-C-UDA-1.0.pdf")  # C-UDA: keep it with any copy


def _remove_leftovers(final: Path) -> list[Path]:
    """Clean up after builds of this name whose process died (killed, power cut).

    The pid in the folder name tells a dead build from one still running in another
    process. A half-built folder is deleted; an old dataset moved aside by a publish that
    died before the new one was in place is put back. Returns what it removed or restored.
    """
    done = []
    for path in final.parent.glob(f".{final.name}.*-*"):
        kind, _, rest = path.name[len(final.name) + 2:].partition("-")
        if kind not in ("building", "old") or not rest.split("-")[0].isdigit() or process_alive(int(rest.split("-")[0])):
            continue
        if kind == "old" and not final.exists():
            os.rename(path, final)
        else:
            shutil.rmtree(path, ignore_errors=True)
        done.append(path)
    return done


def remove_build_leftovers(layout: DataLayout) -> list[Path]:
    """`_remove_leftovers` for every dataset name: what killed builds left, at a server's start."""
    names = {path.name[1:].split(".building-")[0].split(".old-")[0]
             for path in layout.datasets.glob(".*-*") if ".building-" in path.name or ".old-" in path.name}
    return [path for name in sorted(names) for path in _remove_leftovers(layout.datasets / name)]


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


def export_dataset(name: str, layout: DataLayout) -> Path:
    """Zip ``<data>/datasets/<name>/`` to ``<data>/exports/<name>.zip`` (temp file, then rename).

    Only regular files inside the dataset folder go in; links are not followed. Clips are
    stored, not deflated: mp4 does not compress further.
    """
    folder = dataset_folder(layout, name)
    if not is_built(folder) or folder.is_symlink():
        raise DatasetError(f"There is no built dataset named {name}; build it first.")
    layout.exports.mkdir(parents=True, exist_ok=True)
    target = layout.exports / f"{name}.zip"
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
