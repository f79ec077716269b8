"""The download manifest: one JSON line per clip with its latest outcome.

It is what makes a download run resumable: a re-run reads it to skip finished clips and
retry the rest, so it must survive a kill at any moment and a damaged line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from training.atomic import write_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManifestRecord:
    """One line of the manifest: the latest outcome for one clip."""

    video_id: str
    url: str
    status: str  # "done" | "failed" | "skipped"
    bytes: int  # size of the final .mp4 (0 unless done)
    sha256: str  # of the final .mp4 ("" unless done); a re-run compares the size (see config)
    error: str  # why it failed or was skipped ("" when done)
    time: str  # when the outcome was recorded, ISO 8601 UTC
    attempts: int  # HTTP attempts made this time (0: adopted file, skipped, or host given up)
    source: str  # WLASL source site, for the per-source summary
    # "download", or "imported" for a file brought in by `python -m training.curate import`.
    origin: str = "download"


def now() -> str:
    """When an outcome is recorded: ISO 8601, UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(path: str | Path) -> dict[str, ManifestRecord]:
    """Read a manifest into {video_id: record}; a missing file is an empty manifest.

    Unreadable lines are skipped with a warning: the manifest is a cache of outcomes,
    and the worst a lost line costs is one more download.
    """
    path = Path(path)
    records: dict[str, ManifestRecord] = {}
    if not path.exists():
        return records
    fields = {f.name for f in dataclasses.fields(ManifestRecord)}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                record = ManifestRecord(**{k: raw[k] for k in fields if k in raw})
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                logger.warning("%s:%d: ignoring unreadable manifest line (%s)", path, n, e)
                continue
            records[record.video_id] = record
    return records


def write_manifest(path: str | Path, records: Iterable[ManifestRecord]) -> None:
    """Rewrite the manifest atomically, so a kill at any moment leaves a whole file."""
    write_text(Path(path), "".join(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n" for r in records))
