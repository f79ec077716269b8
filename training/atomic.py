"""Writes that a crash cannot leave half done: write beside the target, then rename.

A reader (a later run, the web app, a resumed download) sees either the old file or the
new one, never a truncated one: `os.replace` is atomic within a filesystem, and the temp
file lives in the target's own folder to stay on that filesystem.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(target: Path, *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temp path beside `target`; on success it replaces `target`, on error it is removed.

    `mode` is set before the rename: mkstemp files are private (0600), and datasets,
    exports and manifests are meant to be shared.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The pid in the name tells, after a crash, a dead writer's leftover from a live write.
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(temp)
        os.chmod(temp, mode)
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as temp:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def write_json(target: Path, data: Any) -> None:
    write_text(target, json.dumps(data, indent=2, default=str))


def remove_stale_parts(root: Path) -> list[Path]:
    """Delete the temp files of writes that a killed process never finished.

    They are named `.<target>.<pid>.<random>.part` (see `atomic_path`); one whose process
    is gone cannot be part of a write in progress. The downloader's resumable
    `<video>.mp4.part` files are not hidden and are kept.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    removed = []
    for path in root.rglob(".*.part"):
        pid = path.name.rsplit(".", 3)[-3] if path.name.count(".") >= 4 else ""
        if not pid.isdigit() or process_alive(int(pid)) or not path.is_file() or path.is_symlink():
            continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs (a leftover's writer, say); another user's counts as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's, alive
    return True
