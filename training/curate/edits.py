"""A curator's edits to WLASL clips: relabel, exclude, restore, kept beside the downloads.

WLASL's metadata ships read-only in ``assets/wlasl/``; a curator who finds a clip with
the wrong gloss or a broken span must still be able to fix the dataset built from it.
The edits live in one small JSON file under the data root,

    data/wlasl/edits.json    {video_id: {"gloss": "...", "excluded": false, "updated": 1.7e9}}

rewritten whole through a temp file and ``os.replace`` (a crash leaves the old or the
new file, never half of one) and applied to the instances before any filter, so a
relabelled clip shows up, and is built, under its new gloss. The user's own clips are
edited through ``training.curate.userdata`` instead.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from training.atomic import write_text
from training.curate.wlasl import WlaslInstance, clip_filename
from training.dataset import check_gloss
from training.layout import DataLayout

_lock = threading.Lock()


@dataclass(frozen=True)
class WlaslEdit:
    # The gloss the curator says the clip shows; "" keeps WLASL's own label.
    gloss: str = ""
    # Excluded clips stay listed (so they can be restored) but are never built or downloaded.
    excluded: bool = False
    # Unix time of the last change, for "recently edited" views and audits.
    updated: float = 0.0


def read_edits(layout: DataLayout) -> dict[str, WlaslEdit]:
    """Every edit, by video_id; no file means no edits."""
    path = layout.edits
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8") or "{}")
    fields = {f.name for f in dataclasses.fields(WlaslEdit)}
    return {str(k): WlaslEdit(**{f: v for f, v in value.items() if f in fields}) for k, value in raw.items()}


def set_edit(
    layout: DataLayout,
    video_id: str,
    *,
    original_gloss: str,
    gloss: str | None = None,
    excluded: bool | None = None,
) -> WlaslEdit:
    """Relabel (``gloss``), exclude or restore (``excluded``) one WLASL clip, atomically.

    Relabelling back to ``original_gloss`` and restoring drop the edit altogether, so the
    file only ever holds real differences from WLASL.
    """
    clip_filename(video_id)  # the id is user input: refuse anything that is not a plain name
    with _lock:
        edits = read_edits(layout)
        current = edits.get(video_id, WlaslEdit())
        new_gloss = current.gloss
        if gloss is not None:
            gloss = check_gloss(gloss)
            new_gloss = "" if gloss == original_gloss else gloss
        edit = WlaslEdit(
            gloss=new_gloss,
            excluded=current.excluded if excluded is None else bool(excluded),
            updated=time.time(),
        )
        if edit.gloss or edit.excluded:
            edits[video_id] = edit
        else:
            edits.pop(video_id, None)
        _write(layout.edits, edits)
    return edit


def apply_edits(
    instances: Iterable[WlaslInstance], edits: Mapping[str, WlaslEdit]
) -> tuple[list[WlaslInstance], set[str]]:
    """Instances with their glosses edited, and the video_ids the curator excluded."""
    out, excluded = [], set()
    for inst in instances:
        edit = edits.get(inst.video_id)
        if edit is not None:
            if edit.gloss:
                inst = dataclasses.replace(inst, gloss=edit.gloss)
            if edit.excluded:
                excluded.add(inst.video_id)
        out.append(inst)
    return out, excluded


def _write(path: Path, edits: Mapping[str, WlaslEdit]) -> None:
    write_text(path, json.dumps({k: dataclasses.asdict(v) for k, v in sorted(edits.items())}, indent=1))