"""The user's own clips: corrections from the Upload and Live tabs, recordings from Curate.

Everything lives under one data root (`SIGNLENS_DATA`, default `data/` beside the code):

    data/user/clips/<id><suffix>     the clip, copied in (never moved: the upload may vanish)
    data/user/manifest.jsonl         one JSON object per clip (see `UserClip`)

The manifest is rewritten whole through a temp file and `os.replace`, so a crash or a
kill leaves either the old or the new manifest, never half a line; a clip file is
copied in under a temp name first and renamed, so no partial clip is ever listed.
One lock serializes writers inside the process (the web app's workers).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from training.atomic import atomic_path, write_text

ROOT = Path(__file__).resolve().parent.parent
STATUSES = ("pending", "accepted", "excluded")
_lock = threading.Lock()


class UserDataError(ValueError):
    """A request the store refuses; the message is one sentence for the user."""


@dataclass(frozen=True)
class UserClip:
    # Stable id (also the clip's file stem).
    id: str
    # Path relative to the data root, always inside it.
    clip: str
    # The gloss a person says this clip shows.
    gloss: str
    # Where it came from: "upload" | "live" | "curate".
    source: str
    # What the model had answered (empty for recordings), for reviewing its mistakes.
    predicted: str = ""
    confidence: float = 0.0
    # "pending" until a curator reviews it; "excluded" clips stay on disk but out of datasets.
    status: str = "pending"
    # Unix time of the last change.
    updated: float = 0.0


def default_data_root() -> Path:
    return Path(os.environ.get("SIGNLENS_DATA", ROOT / "data")).resolve()


def manifest_path(data_root: Path) -> Path:
    return Path(data_root) / "user" / "manifest.jsonl"


def read_clips(data_root: Path) -> list[UserClip]:
    path = manifest_path(data_root)
    if not path.is_file():
        return []
    return [UserClip(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def add_clip(data_root: Path, source_file: str | Path, gloss: str, *, source: str, predicted: str = "", confidence: float = 0.0,
             status: str = "pending") -> UserClip:
    """Copy a clip into the store under `gloss` and list it, atomically.

    Corrections from Upload and Live wait for review ("pending"); a curator's own clip is
    listed "accepted" in the same write.
    """
    if status not in STATUSES:
        raise UserDataError(f"Unknown status {status!r}; use one of {', '.join(STATUSES)}.")
    gloss = gloss.strip()
    if not gloss:
        raise UserDataError("Choose the gloss this clip shows before saving it.")
    source_file = Path(source_file)
    if not source_file.is_file():
        raise UserDataError("The clip to save is no longer available; upload it again.")
    data_root = Path(data_root)
    clips_dir = data_root / "user" / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    clip_id = uuid.uuid4().hex[:12]
    target = clips_dir / f"{clip_id}{source_file.suffix.lower()}"
    with atomic_path(target) as temp:
        shutil.copyfile(source_file, temp)
    record = UserClip(clip_id, target.relative_to(data_root).as_posix(), gloss, source, predicted, round(confidence, 4), status, time.time())
    with _lock:
        _write(data_root, read_clips(data_root) + [record])
    return record


def update_clip(data_root: Path, clip_id: str, *, gloss: str | None = None, status: str | None = None) -> UserClip:
    """Relabel, exclude or restore one clip."""
    if status is not None and status not in STATUSES:
        raise UserDataError(f"Unknown status {status!r}; use one of {', '.join(STATUSES)}.")
    with _lock:
        clips = read_clips(data_root)
        for index, clip in enumerate(clips):
            if clip.id == clip_id:
                changed = replace(
                    clip,
                    gloss=(gloss.strip() or clip.gloss) if gloss is not None else clip.gloss,
                    status=status or clip.status,
                    updated=time.time(),
                )
                clips[index] = changed
                _write(data_root, clips)
                return changed
    raise UserDataError(f"No clip with id {clip_id} in the user data.")


def resolve_inside(data_root: Path, relative: str) -> Path:
    """The absolute path of `relative`, refusing anything that leaves the data root.

    Rejects absolute paths, `..` and symlinks pointing outside: manifest lines and UI
    requests are user input.
    """
    root = Path(data_root).resolve()
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise UserDataError("That path is outside the data folder.")
    resolved = (root / candidate).resolve()
    if resolved != root and root not in resolved.parents:
        raise UserDataError("That path is outside the data folder.")
    return resolved


def _write(data_root: Path, clips: list[UserClip]) -> None:
    write_text(manifest_path(data_root), "".join(json.dumps(asdict(clip)) + "\n" for clip in clips))
