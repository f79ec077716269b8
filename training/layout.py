"""Where everything lives under the data root: every folder and file named once, here.

    layout = DataLayout.at()          # $SIGNLENS_DATA, else ./data
    layout.videos                     # data/wlasl/videos/<video_id>.mp4 (downloaded or imported)

The app and each command line build one `DataLayout` where they start and pass it down;
no other module spells a folder name under the data root.

    data/wlasl/videos/          WLASL clips, one <video_id>.mp4 each
    data/wlasl/manifest.jsonl   the downloader's outcome per clip (resumable runs)
    data/wlasl/edits.json       a curator's relabels and exclusions of WLASL clips
    data/user/clips/            the user's own clips (Upload/Live corrections, Curate)
    data/user/manifest.jsonl    one line per user clip
    data/cache/clips/           trimmed and cropped clips, shared by every dataset build
    data/datasets/<name>/       built datasets (training/dataset.py holds the format)
    data/exports/<name>.zip     zipped datasets
    data/runs/<name>/           fine-tuning runs (training/finetune/run_folder.py)
    data/reports/<dataset>/     evaluations of the base model alone
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from training.errors import UserDataError


# Datasets and runs are folders named by users: one path component, safe on every OS,
# never hidden, never "." or "..", and short enough for a path under the data root.
FOLDER_NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit"
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_folder_name(name: str, longest: int) -> bool:
    """True when `name` is a valid dataset or run folder name of at most `longest` characters."""
    return len(name) <= longest and _FOLDER_NAME.fullmatch(name) is not None


def check_folder_name(name: str | None, *, kind: str, longest: int, error: type[Exception]) -> str:
    """`name` stripped, or `error` with one sentence naming the rule (`kind`: "dataset", "run")."""
    name = name.strip() if isinstance(name, str) else ""
    if not is_folder_name(name, longest):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise error(f"{shown!r} is not a {kind} name: use {FOLDER_NAME_RULE} (at most {longest}).")
    return name


@dataclass(frozen=True)
class DataLayout:
    # Absolute, resolved: relative paths under it are checked against it (`inside`).
    root: Path

    @classmethod
    def at(cls, root: str | Path | None = None) -> "DataLayout":
        """The layout at `root`, else at $SIGNLENS_DATA, else at ./data (the working directory's)."""
        chosen = root or os.environ.get("SIGNLENS_DATA") or "data"
        return cls(Path(chosen).expanduser().resolve())

    @property
    def videos(self) -> Path:
        return self.root / "wlasl" / "videos"

    @property
    def download_manifest(self) -> Path:
        return self.root / "wlasl" / "manifest.jsonl"

    @property
    def edits(self) -> Path:
        return self.root / "wlasl" / "edits.json"

    @property
    def user_clips(self) -> Path:
        return self.root / "user" / "clips"

    @property
    def user_manifest(self) -> Path:
        return self.root / "user" / "manifest.jsonl"

    @property
    def clip_cache(self) -> Path:
        return self.root / "cache" / "clips"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def relative(self, path: Path) -> str:
        """`path` (under the root) as the relative POSIX string that manifests store."""
        return Path(path).relative_to(self.root).as_posix()

    def inside(self, relative: str) -> Path:
        """The absolute path of `relative`, refusing anything that leaves the data root."""
        return resolve_inside(self.root, relative)


def resolve_inside(folder: Path, relative: str) -> Path:
    """The absolute path of `relative` under `folder`, refusing anything that leaves it.

    Rejects absolute paths, `..` and symlinks pointing outside: manifest lines, dataset
    rows and UI requests are user input.
    """
    root = Path(folder).resolve()
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise UserDataError("That path is outside the data folder.")
    resolved = (root / candidate).resolve()
    if resolved != root and root not in resolved.parents:
        raise UserDataError("That path is outside the data folder.")
    return resolved


def remove_leftovers(layout: DataLayout) -> list[str]:
    """What killed processes left under the data root, removed where a server starts.

    Half-built datasets (or an old one moved aside by a publish that died, put back) and
    the temp files of unfinished atomic writes. Returns them, relative to the root.
    """
    from training.atomic import remove_stale_parts
    from training.curate.build import remove_build_leftovers

    found = remove_build_leftovers(layout) + remove_stale_parts(layout.root)
    return [layout.relative(path) for path in found]
