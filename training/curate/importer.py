"""Import WLASL videos people already have: files named by their WLASL video id.

Many of WLASL's links are dead, so most people who fine-tune on it hold the videos from
elsewhere: the start kit's `videos/<video_id>.mp4`, a mirror, or per-gloss folders
(`book/07069.mp4`). `import_videos` walks such a folder, matches each file's name against
the metadata, checks that it decodes, and places it where the downloader would
(`<data>/wlasl/videos/<video_id>.mp4`): hard-linked (free, no second copy) or copied
across filesystems, converted to mp4 when it is another container. Each one is recorded
in the download manifest with origin "imported", so builds, the Curate tab and later
downloads see it as there.

    python -m training.curate import ~/WLASL/start_kit/videos

A file appears under its final name in one rename, and the manifest is rewritten
atomically, so a killed import leaves whole files only (its temp files carry its pid and
are removed at the next start); running it again finishes what is missing and imports
nothing twice.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine import VIDEO_SUFFIXES
from training.atomic import remove_stale_parts
from training.curate.clipcache import link_or_copy
from training.curate.download import files
from training.curate.download.manifest import ManifestRecord, now, read_manifest, write_manifest
from training.curate.plan import Instances
from training.errors import Cancelled, ContentError, DatasetError
from training.layout import DataLayout


@dataclass
class ImportReport:
    # Video ids placed by this run.
    imported: list[str] = field(default_factory=list)
    # Video ids already in place with the same content (a re-run, or files downloaded before).
    present: list[str] = field(default_factory=list)
    # Files (relative to the folder) whose name is no WLASL video id.
    unknown: list[str] = field(default_factory=list)
    # Files (relative to the folder) for a video id another file of this run already had.
    duplicates: list[str] = field(default_factory=list)
    # (file, reason) of files that are not a video we can decode.
    broken: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{len(self.imported)} imported, {len(self.present)} already there, {len(self.unknown)} with an "
                 f"unknown video id, {len(self.duplicates)} duplicates, {len(self.broken)} broken."]
        for title, names in (("unknown video id", self.unknown), ("duplicate", self.duplicates)):
            lines += [f"{title}: {name}" for name in names[:10]]
            if len(names) > 10:
                lines.append(f"... and {len(names) - 10} more ({title})")
        lines += [f"broken: {name} ({why})" for name, why in self.broken[:10]]
        if len(self.broken) > 10:
            lines.append(f"... and {len(self.broken) - 10} more broken")
        return "\n".join(lines)


def source_folder(folder: str | Path) -> Path:
    """`folder` (typed by a person, `~` expanded) when it is a folder, else one sentence saying it is not."""
    folder = Path(str(folder).strip()).expanduser()
    try:
        found = folder.is_dir()
    except OSError:  # a name longer than the filesystem allows ("File name too long"), ...
        found = False
    if not found:
        shown = folder.name or str(folder)
        raise DatasetError(f"There is no folder {shown if len(shown) <= 40 else shown[:40] + '...'} to import from.")
    return folder


def import_videos(folder: str | Path, layout: DataLayout, instances: Instances, *,
                  progress: Callable[[int, int], None] | None = None,
                  cancel: threading.Event | None = None) -> ImportReport:
    """Import every video file under `folder` whose name is a WLASL video id (see the module doc)."""
    folder = source_folder(folder)
    if folder.resolve() == layout.videos.resolve():
        raise DatasetError("That is the download folder itself: import from the folder where your videos are.")
    layout.videos.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(layout.videos)  # what a killed import left
    candidates = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                        and not p.name.startswith("."))
    manifest = read_manifest(layout.download_manifest)
    report, seen = ImportReport(), set()
    for done, path in enumerate(candidates, 1):
        if cancel is not None and cancel.is_set():
            break
        name, video_id = path.relative_to(folder).as_posix(), path.stem
        if video_id not in instances.by_id:
            report.unknown.append(name)
        elif video_id in seen:
            report.duplicates.append(name)
        else:
            seen.add(video_id)
            target = layout.videos / f"{video_id}.mp4"
            try:
                placed = _place(path, target, manifest.get(video_id))
            except ContentError as exc:
                # The reason without the decoder's details, which name the file's full path.
                report.broken.append((name, str(exc).split(" (")[0]))
                continue
            (report.imported if placed else report.present).append(video_id)
            previous = manifest.get(video_id)
            if placed or previous is None or previous.status != "done":  # or placed by a killed run
                manifest[video_id] = _record(instances.by_id[video_id], target)
        if progress is not None:
            progress(done, len(candidates))
    write_manifest(layout.download_manifest, manifest.values())
    if cancel is not None and cancel.is_set():
        raise Cancelled
    return report


def _place(source: Path, target: Path, previous: ManifestRecord | None) -> bool:
    """Put a checked copy of `source` at `target`; False when the same video is there already."""
    kind = files.sniff_file(source)
    if target.is_file():
        if kind == "mp4" and (source.stat().st_size == target.stat().st_size
                              and files.file_sha256(source) == files.file_sha256(target)):
            return False
        if kind != "mp4" and previous is not None and previous.status == "done":
            return False  # converted before: the mp4 there came from a file like this one
    files.decode_check(source)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".part")
    os.close(fd)
    temp = Path(temp)
    try:
        if kind == "mp4":
            temp.unlink()
            link_or_copy(source, temp)
        else:
            files.convert_to_mp4(source, temp, kind)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return True


def _record(inst, path: Path) -> ManifestRecord:
    return ManifestRecord(video_id=inst.video_id, url=inst.url, status="done", bytes=path.stat().st_size,
                          sha256=files.file_sha256(path), error="", time=now(), attempts=0, source=inst.source,
                          origin="imported")
