"""The user's own clips: corrections from the Upload and Live tabs, recordings from Curate.

Under the data root (`training.layout.DataLayout`):

    data/user/clips/<id><suffix>     the clip, copied in (never moved: the upload may vanish)
    data/user/manifest.jsonl         one JSON object per clip (see `UserClip`)

The manifest is rewritten whole through a temp file and `os.replace`, so a crash or a
kill leaves either the old or the new manifest, never half a line; a clip file is
copied in under a temp name first and renamed, so no partial clip is ever listed.
One lock serializes writers inside the process (the web app's workers).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from engine import IMAGE_SUFFIXES, ClipError, LimitsConfig, load_clip
from training.atomic import atomic_path, write_text
from training.dataset import check_gloss
from training.errors import DatasetError, UserDataError
from training.layout import DataLayout

STATUSES = ("pending", "accepted", "excluded")
_lock = threading.Lock()


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


def read_clips(layout: DataLayout) -> list[UserClip]:
    path = layout.user_manifest
    if not path.is_file():
        return []
    return [UserClip(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def add_clip(layout: DataLayout, source_file: str | Path, gloss: str, *, source: str, predicted: str = "", confidence: float = 0.0,
             status: str = "pending", limits: LimitsConfig | None = None) -> UserClip:
    """Copy a clip into the store under `gloss` and list it, atomically.

    The file must decode as a video or an image the engine reads (within `limits`), and
    it is stored under the extension of what it really is, whatever it was called: the
    store never holds a page or a script a browser would run. Corrections from Upload and
    Live wait for review ("pending"); a curator's own clip is listed "accepted" in the
    same write.
    """
    if status not in STATUSES:
        raise UserDataError(f"Unknown status {status!r}; use one of {', '.join(STATUSES)}.")
    gloss = _checked(gloss)
    source_file = Path(source_file)
    if not source_file.is_file():
        raise UserDataError("The clip to save is no longer available; upload it again.")
    suffix = media_suffix(source_file, limits or LimitsConfig())
    clips_dir = layout.user_clips
    clips_dir.mkdir(parents=True, exist_ok=True)
    clip_id = uuid.uuid4().hex[:12]
    target = clips_dir / f"{clip_id}{suffix}"
    with atomic_path(target) as temp:
        shutil.copyfile(source_file, temp)
    record = UserClip(clip_id, layout.relative(target), gloss, source, predicted, round(confidence, 4), status, time.time())
    with _lock:
        _write(layout, read_clips(layout) + [record])
    return record


def update_clip(layout: DataLayout, clip_id: str, *, gloss: str | None = None, status: str | None = None) -> UserClip:
    """Relabel, exclude or restore one clip."""
    if status is not None and status not in STATUSES:
        raise UserDataError(f"Unknown status {status!r}; use one of {', '.join(STATUSES)}.")
    with _lock:
        clips = read_clips(layout)
        for index, clip in enumerate(clips):
            if clip.id == clip_id:
                changed = replace(
                    clip,
                    gloss=_checked(gloss) if gloss is not None else clip.gloss,
                    status=status or clip.status,
                    updated=time.time(),
                )
                clips[index] = changed
                _write(layout, clips)
                return changed
    raise UserDataError(f"No clip with id {clip_id} in the user data.")


# What a stored clip is called, by what PyAV or Pillow says it is.
_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": ".mp4", "matroska,webm": ".webm", "avi": ".avi", "gif": ".gif"}
_IMAGES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp"}


def media_suffix(path: Path, limits: LimitsConfig) -> str:
    """The canonical extension of a clip that decodes, or one sentence saying why it cannot be kept."""
    import av
    from PIL import Image, UnidentifiedImageError

    try:
        load_clip(path, num_frames=1, limits=limits)  # decodes, within the engine's limits
    except ClipError as exc:
        raise UserDataError(str(exc)) from None
    if path.suffix.lower() in IMAGE_SUFFIXES:
        try:
            with Image.open(path) as image:
                kind = _IMAGES.get(image.format or "")
        except (UnidentifiedImageError, OSError):
            kind = None
    else:
        try:
            with av.open(str(path), metadata_errors="replace") as container:
                kind = _CONTAINERS.get(container.format.name)
        except (av.error.FFmpegError, OSError, ValueError):
            kind = None
    if kind is None:
        raise UserDataError(f"The file {path.name} is a kind of video or image that cannot be kept: "
                            "save it as mp4, webm, avi, png or jpg.")
    return kind


def find_clip(layout: DataLayout, clip_id: str) -> UserClip:
    for clip in read_clips(layout):
        if clip.id == clip_id:
            return clip
    raise UserDataError(f"No clip with id {clip_id} in the user data.")


def _checked(gloss: str) -> str:
    try:
        return check_gloss(gloss)
    except DatasetError as exc:
        raise UserDataError(str(exc)) from None


def _write(layout: DataLayout, clips: list[UserClip]) -> None:
    write_text(layout.user_manifest, "".join(json.dumps(asdict(clip)) + "\n" for clip in clips))
