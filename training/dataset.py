"""The dataset format: what curation writes and fine-tuning reads, and nothing else.

This is the one module both sides of `training/` share. `training.curate` plans and
builds a dataset folder; `training.finetune` trains and evaluates on it:

    <data>/datasets/<name>/dataset.jsonl   one row per clip: clip (relative, already trimmed
                                           and cropped), gloss, split, signer_id, source,
                                           video_id, frame_start, frame_end, bbox (where
                                           the clip came from), frames, fps, origin
    <data>/datasets/<name>/clips/          the clips
    <data>/datasets/<name>/config.json     the resolved `DatasetConfig`: rebuild from it alone
    <data>/datasets/<name>/stats.json      counts per gloss/split/source/signer + build report
    <data>/datasets/<name>/stats.png       the same as a plot

    from training.dataset import load_dataset
    data = load_dataset("wlasl100", layout)
    clip = data.frames(data.rows[0])       # the engine's own sampling: what inference sees
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import build_config, project_path, read_config_file
from training.errors import DatasetError, UserDataError
from training.layout import FOLDER_NAME_RULE, DataLayout, check_folder_name, is_folder_name, resolve_inside

DEFAULT_DATASET_CONFIG = "assets/config/dataset.yml"
SPLITS = ("train", "val", "test")
EVAL_SPLIT = "test"  # what an evaluation measures on by default: clips training never saw
SPLIT_RULES = ("official", "signer")
USER_STATUSES = ("pending", "accepted")  # "excluded" never goes into a dataset
# A dataset's name is its folder's; run names (<dataset>-<timestamp>) get more room.
NAME_LONGEST = 64
# The files of a built dataset folder (the module docstring says what each holds).
ROWS_FILE = "dataset.jsonl"
CONFIG_FILE = "config.json"
STATS_FILE = "stats.json"
STATS_PLOT = "stats.png"


@dataclass(frozen=True)
class DatasetConfig:
    # Folder name under <data>/datasets/: letters, digits, ".", "_", "-", so it can only
    # ever name a folder there.
    name: str = "signlens"
    # Glossary file (the engine's format); only its glosses are kept. Relative paths are
    # from the working directory, else the installed project ("assets/..."); "" keeps
    # every WLASL gloss.
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
    # Frames training samples from each clip; 0 = the engine's (its input profile's, or
    # video.frames_per_clip when set), resolved and saved in config.json. Clips themselves keep every frame of the span.
    frames_per_clip: int = 0
    # Crop to WLASL's signer box as the engine does (engine video.crop_to_bbox): hands
    # fill more of the model's tile.
    crop_to_bbox: bool = True
    # Longest side of a stored clip in pixels; 448 is the model's tile, so nothing the
    # vision tower could see is lost (see training/curate/clipcache.py for the measurement).
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
        # One sentence per bad value, naming it and its rule: not every rule at once.
        problems = []
        if not is_folder_name(self.name, NAME_LONGEST):
            problems.append(f"The dataset name {self.name[:80]!r} is not valid: use {FOLDER_NAME_RULE} (at most {NAME_LONGEST})")
        if self.splits not in SPLIT_RULES:
            problems.append(f"splits must be {' or '.join(SPLIT_RULES)}, not {self.splits!r}")
        if (len(self.split_fractions) != 3 or any(f < 0 for f in self.split_fractions)
                or abs(sum(self.split_fractions) - 1) > 1e-6):
            problems.append(f"split_fractions must be three shares that sum to 1, not {list(self.split_fractions)}")
        if not 0 <= self.frames_per_clip <= 64:
            problems.append(f"frames_per_clip must be 0-64, not {self.frames_per_clip}")
        if not 16 <= self.max_side <= 4096:
            problems.append(f"max_side must be 16-4096 pixels, not {self.max_side}")
        if not set(self.user_statuses) <= set(USER_STATUSES):
            problems.append(f"user_statuses may hold {' and '.join(USER_STATUSES)}, not {list(self.user_statuses)}")
        if self.user_split not in SPLITS:
            problems.append(f"user_split must be one of {', '.join(SPLITS)}, not {self.user_split!r}")
        if self.max_clips_per_gloss < 0:
            problems.append(f"max_clips_per_gloss must be 0 or more, not {self.max_clips_per_gloss}")
        if self.workers < 1:
            problems.append(f"workers must be at least 1, not {self.workers}")
        if problems:  # field names as written (user_statuses), so the user can find them in the YAML
            raise DatasetError("; ".join(problems) + ".")

    def glossary_path(self) -> Path | None:
        return project_path(self.glossary) if self.glossary else None

    def resolved(self, engine_config) -> "DatasetConfig":
        """The config with the engine's frames per clip filled in (what config.json records)."""
        if self.frames_per_clip:
            return self
        return dataclasses.replace(self, frames_per_clip=engine_config.input_profile().frames_per_clip)


def load_dataset_config(path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None) -> DatasetConfig:
    """YAML (or a built dataset's config.json) in, ``overrides`` on top; unknown keys are an error."""
    path = project_path(path or DEFAULT_DATASET_CONFIG)
    raw = read_config_file(path, DatasetError)
    if isinstance(raw.get("dataset"), dict) and "rows" in raw:
        raw = raw["dataset"]  # a dataset's config.json: rebuild exactly that dataset
    merged = {**raw, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return build_config(DatasetConfig, merged, path.name, DatasetError)


def check_name(name: str | None) -> str:
    """A dataset name, or one sentence saying why it cannot be one."""
    return check_folder_name(name, kind="dataset", longest=NAME_LONGEST, error=DatasetError)


_GLOSS = re.compile(r"[^\W_](?:[\w '.()-]{0,62}[\w.)])?")
GLOSS_RULE = "1-64 letters, digits, spaces and ' . - _ ( )"


def check_gloss(gloss: object) -> str:
    """A gloss as stored (trimmed), or one sentence saying why it cannot be one.

    Glosses come from people and the API and end up in manifests, vocabularies and
    prompts: no control characters, no newlines, nothing a few words could not say.
    """
    if not isinstance(gloss, str):
        raise DatasetError("The gloss must be text.")
    gloss = gloss.strip()
    if not gloss:
        raise DatasetError("Choose the gloss this clip shows first.")
    if len(gloss) > 64:
        raise DatasetError(f"That gloss is {len(gloss)} characters long; a gloss has at most 64.")
    if not _GLOSS.fullmatch(gloss):
        raise DatasetError(f"The gloss {gloss[:40]!r} has characters a gloss cannot have: use {GLOSS_RULE}.")
    return gloss


def dataset_folder(layout: DataLayout, name: str) -> Path:
    return layout.datasets / check_name(name)


def is_built(folder: Path) -> bool:
    """Whether `folder` holds a built dataset (its rows file is written last, by a rename)."""
    return (folder / ROWS_FILE).is_file()


def list_datasets(layout: DataLayout) -> list[str]:
    """Names of the built datasets, sorted."""
    root = layout.datasets
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if is_folder_name(p.name, NAME_LONGEST) and is_built(p) and not p.is_symlink())


@dataclass(frozen=True)
class Dataset:
    folder: Path
    config: DatasetConfig
    rows: tuple[dict[str, Any], ...]

    def split(self, name: str) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["split"] == name]

    def splits(self) -> list[str]:
        """The splits that hold at least one clip, in train/val/test order."""
        present = {row["split"] for row in self.rows}
        return [split for split in SPLITS if split in present]

    def lacks(self, split: str) -> str:
        """"" when `split` holds clips, else the sentence saying it holds none (and what to do).

        Said before a run or an evaluation starts, not after a process has loaded a model.
        """
        if self.split(split):
            return ""
        return (f"The dataset {self.folder.name} has no {split} clips (its splits: {', '.join(self.splits()) or 'none'}): "
                f"rebuild it with a {split} split.")

    def glosses(self) -> list[str]:
        return sorted({row["gloss"] for row in self.rows})

    def clip_path(self, row: Mapping[str, Any]) -> Path:
        try:
            return resolve_inside(self.folder, row["clip"])
        except UserDataError:
            raise DatasetError(f"Row clip {row['clip']!r} points outside the dataset folder.") from None

    def frames(self, row: Mapping[str, Any], *, limits=None):
        """The frames the model sees for this row: the engine's own sampling of the whole clip."""
        from engine import LimitsConfig, load_clip

        return load_clip(self.clip_path(row), num_frames=self.config.frames_per_clip, limits=limits or LimitsConfig())


def load_dataset(name_or_folder: str | Path, layout: DataLayout) -> Dataset:
    """A built dataset by name (under ``<data>/datasets/``) or by folder path."""
    folder = Path(name_or_folder)
    if not is_built(folder):
        name = str(name_or_folder)
        folder = dataset_folder(layout, name)
        if not is_built(folder):
            raise DatasetError(f"There is no built dataset named {name}: build it first "
                               "(the Curate tab, or python -m training.curate build).")
    config = load_dataset_config(folder / CONFIG_FILE)
    return Dataset(folder=folder, config=config, rows=tuple(_read_rows(folder)))


def _read_rows(folder: Path) -> list[dict[str, Any]]:
    """The rows of `folder`'s dataset.jsonl; a damaged line is named rather than a JSON traceback."""
    try:
        text = (folder / ROWS_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise DatasetError(f"The dataset {folder.name} cannot be read ({ROWS_FILE}); rebuild it.") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not {"clip", "gloss", "split"} <= set(row):
            raise DatasetError(f"Line {number} of the dataset {folder.name} ({ROWS_FILE}) is damaged; rebuild the dataset.")
        rows.append(row)
    return rows
