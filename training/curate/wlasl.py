"""WLASL v0.3 metadata: load, filter and re-split the instance list.

WLASL (Li et al., WACV 2020) is the word-level ASL dataset we curate training clips
from. Its metadata ships with SignLens in ``assets/wlasl/`` (licence C-UDA 1.0, kept
beside it), so everything here works offline; only the videos must be downloaded
(``training/curate/download/``).

The official train/val/test split puts the same signer in train and test, which makes
test accuracy an optimistic estimate of how the model does on a new user.
``signer_independent_split`` reassigns splits so that no signer is in two of them.

    from training.curate import wlasl
    instances = wlasl.load_wlasl()
    chosen = wlasl.filter_instances(instances, subset="WLASL100", splits={"train"})
    resplit = wlasl.signer_independent_split(instances, seed=0)
    print(wlasl.glosses_without_split(resplit, split="test"))
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import project_path
from training.dataset import SPLITS
from training.errors import DatasetError, WlaslFormatError

ASSET_DIR = project_path("assets/wlasl")
DEFAULT_METADATA = ASSET_DIR / "WLASL_v0.3.json.gz"
# The official subsets, named as in the paper; the files are the `nslt_*.json` of the
# WLASL release (the I3D baseline's "nslt" = neural sign language translation format).
SUBSETS = {f"WLASL{n}": ASSET_DIR / f"nslt_{n}.json.gz" for n in (100, 300, 1000, 2000)}
_REQUIRED_KEYS = ("video_id", "url", "source", "fps", "frame_start", "frame_end",
                  "bbox", "signer_id", "variation_id", "instance_id", "split")


@dataclass(frozen=True)
class WlaslInstance:
    """One WLASL clip: a signer showing one gloss, somewhere inside one video."""

    gloss: str  # the sign's English label, lowercase WLASL spelling ("book", "thank you")
    video_id: str  # unique per instance; also the local file name (see clip_filename)
    url: str  # where the video was published: YouTube for ~25%, else a dictionary site
    source: str  # site the clip came from ("aslpro", "signingsavvy", ...): per-site stats
    fps: int  # frame rate the frame numbers below refer to (25 for all of v0.3)
    frame_start: int  # first frame of the sign, 1-based (YouTube clips hold several signs)
    frame_end: int  # last frame of the sign, inclusive; -1 means "to the end of the video"
    bbox: tuple[int, int, int, int]  # signer box (x1, y1, x2, y2) in pixels, for cropping
    signer_id: int  # who signs; the key of the signer-independent split
    variation_id: int  # which variant of the sign (regional or alternative forms)
    instance_id: int  # index of the instance within its gloss entry
    split: str  # "train" | "val" | "test" (official split unless re-split)

    @property
    def filename(self) -> str:
        """Local file name of this instance's download."""
        return clip_filename(self.video_id)


def clip_filename(video_id: str) -> str:
    """Local file name for a downloaded clip: ``{video_id}.mp4``.

    Every clip is stored as mp4 whatever the site served (swf/flv are converted on
    download), so one name rule is enough for the downloader and the dataset builder.
    """
    if not video_id or "/" in video_id or "\\" in video_id or video_id.startswith("."):
        raise ValueError(f"not a usable video_id for a file name: {video_id!r}")
    return f"{video_id}.mp4"


def _read_json(path: Path) -> Any:
    # The shipped copies are gzipped to keep the repository small; a user's own copy of
    # the upstream file is usually not, so both are read.
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"The WLASL metadata file {path.name} does not exist.") from None
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise WlaslFormatError(f"The WLASL metadata file {path.name} is not readable JSON ({exc}).") from None


def _parse_instance(gloss: str, raw: dict[str, Any]) -> WlaslInstance:
    missing = [k for k in _REQUIRED_KEYS if k not in raw]
    if missing:
        raise WlaslFormatError(f"instance {raw.get('video_id', '?')!r} of gloss {gloss!r} "
                               f"lacks {missing}")
    bbox = raw["bbox"]
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise WlaslFormatError(f"instance {raw['video_id']!r}: bbox must be 4 numbers, got {bbox!r}")
    split = raw["split"]
    if split not in SPLITS:
        raise WlaslFormatError(f"instance {raw['video_id']!r}: split {split!r} not in {SPLITS}")
    try:
        return WlaslInstance(
            gloss=str(gloss),
            video_id=str(raw["video_id"]),
            url=str(raw["url"]),
            source=str(raw["source"]),
            fps=int(raw["fps"]),
            frame_start=int(raw["frame_start"]),
            frame_end=int(raw["frame_end"]),
            bbox=(int(bbox[0]), int(bbox[1]), int(bbox[2]), int(bbox[3])),
            signer_id=int(raw["signer_id"]),
            variation_id=int(raw["variation_id"]),
            instance_id=int(raw["instance_id"]),
            split=split,
        )
    except (TypeError, ValueError) as e:
        raise WlaslFormatError(f"instance {raw['video_id']!r} of gloss {gloss!r}: {e}") from e


def load_wlasl(path: str | Path | None = None) -> list[WlaslInstance]:
    """Read ``WLASL_v0.3.json`` (or ``.json.gz``) into a flat list, in file order.

    ``path=None`` reads the copy shipped in ``assets/wlasl/``.
    """
    path = Path(path) if path is not None else DEFAULT_METADATA
    data = _read_json(path)
    try:
        return _parse_entries(data)
    except WlaslFormatError as exc:
        raise WlaslFormatError(f"The WLASL metadata file {path.name} is not WLASL v0.3: {exc}.") from None


def _parse_entries(data: Any) -> list[WlaslInstance]:
    if not isinstance(data, list):
        raise WlaslFormatError(f"it holds a {type(data).__name__}, not a list of gloss entries")
    instances: list[WlaslInstance] = []
    seen: set[str] = set()
    for entry in data:
        if not isinstance(entry, dict) or "gloss" not in entry or not isinstance(entry.get("instances"), list):
            raise WlaslFormatError(f"an entry has no 'gloss' and 'instances': {str(entry)[:60]}")
        for raw in entry["instances"]:
            if not isinstance(raw, dict):
                raise WlaslFormatError(f"an instance of gloss {str(entry['gloss'])[:40]!r} is not an object")
            inst = _parse_instance(entry["gloss"], raw)
            # video_id names the downloaded file; a duplicate would make two instances
            # overwrite each other's clip.
            if inst.video_id in seen:
                raise WlaslFormatError(f"video_id {inst.video_id!r} appears twice")
            seen.add(inst.video_id)
            instances.append(inst)
    return instances


def load_subset(name_or_path: str | Path) -> dict[str, str]:
    """Map video_id -> official split for WLASL100/300/1000/2000 or an ``nslt_*.json`` file.

    Names are case-insensitive (``"wlasl100"`` works). Note that the upstream subset files
    list a few video ids that WLASL v0.3 lacks (12 in WLASL2000); they are kept here and
    simply match nothing in ``filter_instances``.
    """
    key = str(name_or_path).upper()
    if key in SUBSETS:
        path = SUBSETS[key]
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise DatasetError(f"There is no WLASL subset {str(name_or_path)[:40]!r}: use one of "
                               f"{', '.join(SUBSETS)} or the path of an nslt_*.json file.")
    data = _read_json(path)
    if not isinstance(data, dict):
        raise WlaslFormatError(f"The WLASL subset file {path.name} is not an object keyed by video_id.")
    subset: dict[str, str] = {}
    for video_id, info in data.items():
        split = info.get("subset") if isinstance(info, dict) else None
        if split not in SPLITS:
            raise WlaslFormatError(f"The WLASL subset file {path.name} gives video {video_id!r} the subset "
                                   f"{split!r}, not one of {', '.join(SPLITS)}.")
        subset[str(video_id)] = split
    return subset


def filter_instances(
    instances: Iterable[WlaslInstance],
    *,
    glossary: Iterable[str] | None = None,
    subset: str | Path | None = None,
    sources: Iterable[str] | None = None,
    splits: Iterable[str] | None = None,
) -> list[WlaslInstance]:
    """Keep the instances that pass every given filter (``None`` = no filter), in order.

    ``glossary`` matches glosses case-insensitively (WLASL spells them lowercase);
    ``subset`` is a name or path for ``load_subset``. The instances are not modified.
    """
    gloss_set = None if glossary is None else frozenset(g.strip().lower() for g in glossary)
    subset_ids = None if subset is None else load_subset(subset)
    source_set = None if sources is None else frozenset(sources)
    split_set = None if splits is None else frozenset(splits)
    if split_set is not None and not split_set <= set(SPLITS):
        raise ValueError(f"unknown split(s) {sorted(split_set - set(SPLITS))}; valid: {list(SPLITS)}")
    return [
        inst for inst in instances
        if (gloss_set is None or inst.gloss.lower() in gloss_set)
        and (subset_ids is None or inst.video_id in subset_ids)
        and (source_set is None or inst.source in source_set)
        and (split_set is None or inst.split in split_set)
    ]


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(not math.isfinite(f) or f < 0 for f in fractions):
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test), got {fractions!r}")
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {sum(fractions)})")
    return float(fractions[0]), float(fractions[1]), float(fractions[2])


def signer_independent_split(
    instances: Sequence[WlaslInstance],
    *,
    seed: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    pool: int | None = None,
) -> list[WlaslInstance]:
    """Return copies of ``instances`` (same order) whose split keeps every signer in one split.

    Fractions are (train, val, test) shares of *clips*, met approximately: whole signers
    move, and WLASL's signers are very unequal (one has ~2,000 clips, many have a few).

    Heuristic, test first, then val, train takes every signer left:
      - signers are shuffled with ``seed``; while the split holds fewer clips than its
        target, the candidates are the unplaced signers whose clip count brings the
        split closer to its target;
      - the pick is the candidate adding the most glosses the split does not have yet,
        per clip spent (greedy set cover). A gloss only counts if another signer that
        is still unplaced also has it, so pulling a signer into test does not take the
        gloss out of train. Ties go to the earlier signer in the seeded order.
    ``pool=k`` lets only the first k candidates (in seeded order) compete, trading gloss
    coverage for test sets that differ more between seeds (for repeated runs).

    On WLASL v0.3 (all 2,000 glosses, default fractions) about 16% of glosses end up
    without a test clip with ``pool=None`` (about 23% with ``pool=16``, 26% for a plain
    random signer split): ten percent of the clips, moved a whole signer at a time, cannot
    hold every gloss. ``glosses_without_split`` lists them. On WLASL100 none is missing.
    """
    if pool is not None and pool < 1:
        raise ValueError(f"pool must be None or >= 1, got {pool}")
    _, frac_val, frac_test = _check_fractions(fractions)
    clips: Counter[int] = Counter(inst.signer_id for inst in instances)
    glosses_of: dict[int, set[str]] = defaultdict(set)
    for inst in instances:
        glosses_of[inst.signer_id].add(inst.gloss)
    # unplaced[g]: signers not yet in test/val that have gloss g (train keeps those).
    unplaced: Counter[str] = Counter(g for gs in glosses_of.values() for g in gs)

    rng = random.Random(seed)
    order = sorted(clips)
    rng.shuffle(order)
    split_of: dict[int, str] = {}
    total = len(instances)

    def gain_per_clip(signer: int, covered: set[str]) -> float:
        new = sum(1 for g in glosses_of[signer] - covered if unplaced[g] >= 2)
        return new / clips[signer]

    for split, fraction in (("test", frac_test), ("val", frac_val)):
        target = round(fraction * total)
        count = 0
        covered: set[str] = set()
        while count < target:
            # Adding a signer must reduce |count - target|, so a big signer is only taken
            # when it overshoots less than it is missing.
            candidates = [s for s in order
                          if s not in split_of and clips[s] < 2 * (target - count)]
            if not candidates:
                break
            if pool is not None:
                candidates = candidates[:pool]
            # max() keeps the first of equal scores, i.e. the seeded order breaks ties.
            best = max(candidates, key=lambda s: gain_per_clip(s, covered))
            split_of[best] = split
            count += clips[best]
            covered |= glosses_of[best]
            for g in glosses_of[best]:
                unplaced[g] -= 1
    return [dataclasses.replace(inst, split=split_of.get(inst.signer_id, "train"))
            for inst in instances]


def glosses_without_split(instances: Iterable[WlaslInstance], split: str = "test") -> list[str]:
    """Glosses that occur in ``instances`` but have no clip in ``split``, sorted.

    Such glosses cannot be evaluated (test) or early-stopped on (val); report them
    rather than silently scoring a smaller vocabulary.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}")
    all_glosses: set[str] = set()
    in_split: set[str] = set()
    for inst in instances:
        all_glosses.add(inst.gloss)
        if inst.split == split:
            in_split.add(inst.gloss)
    return sorted(all_glosses - in_split)
