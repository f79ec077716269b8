"""WLASL metadata loading, filtering and the signer-independent split, on the real v0.3 files."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest
from conftest import shared_path
from engine import SignLensError
from training.errors import DatasetError, TrainingError, WlaslFormatError

from training.curate import wlasl
from training.curate.wlasl import (
    ASSET_DIR,
    WlaslInstance,
    clip_filename,
    filter_instances,
    glosses_without_split,
    load_subset,
    load_wlasl,
    signer_independent_split,
)

SUBSET_SIZES = {"WLASL100": 2038, "WLASL300": 5118, "WLASL1000": 13174, "WLASL2000": 21095}


@pytest.fixture(scope="module")
def instances() -> list[WlaslInstance]:
    return load_wlasl()


def test_shipped_metadata_is_complete(instances):
    assert len(instances) == 21083
    assert len({i.gloss for i in instances}) == 2000
    assert len({i.video_id for i in instances}) == 21083
    assert Counter(i.split for i in instances) == {"train": 14289, "val": 3916, "test": 2878}
    first = instances[0]
    assert first == WlaslInstance(gloss="book", video_id="69241", url="http://aslbricks.org/New/ASL-Videos/book.mp4",
                                  source="aslbrick", fps=25, frame_start=1, frame_end=-1, bbox=(385, 37, 885, 720),
                                  signer_id=118, variation_id=0, instance_id=0, split="train")
    assert first.filename == "69241.mp4"


def test_assets_carry_the_licence_and_stay_small():
    names = {p.name for p in ASSET_DIR.iterdir()}
    assert {"C-UDA-1.0.pdf", "README.md", "WLASL_v0.3.json.gz", "wlasl_class_list.txt.gz"} <= names
    assert {f"nslt_{n}.json.gz" for n in (100, 300, 1000, 2000)} <= names
    assert sum(p.stat().st_size for p in ASSET_DIR.iterdir()) < 3 * 2**20
    assert "C-UDA" in (ASSET_DIR / "README.md").read_text()


def test_shipped_copy_matches_upstream_field_by_field(instances):
    upstream = shared_path("data", "wlasl", "WLASL_v0.3.json")
    # Reading the plain .json also exercises the non-gzip path.
    assert load_wlasl(upstream) == instances
    raw = json.loads(upstream.read_text())
    by_id = {i.video_id: i for i in instances}
    for entry in raw:
        for r in entry["instances"]:
            inst = by_id[r["video_id"]]
            assert (inst.gloss, inst.frame_start, inst.frame_end, list(inst.bbox), inst.signer_id) == \
                (entry["gloss"], r["frame_start"], r["frame_end"], r["bbox"], r["signer_id"])


def test_frame_ranges_and_boxes_are_kept(instances):
    ranged = [i for i in instances if i.frame_end != -1]
    assert ranged and all(i.frame_end >= i.frame_start >= 1 for i in ranged)
    assert all(len(i.bbox) == 4 and i.bbox[2] > i.bbox[0] and i.bbox[3] > i.bbox[1] for i in instances)
    assert all(isinstance(v, int) for v in instances[0].bbox)


@pytest.mark.parametrize(("name", "size"), SUBSET_SIZES.items())
def test_subset_sizes_match_the_nslt_files(name, size, instances):
    subset = load_subset(name)
    n = name.removeprefix("WLASL")
    with gzip.open(ASSET_DIR / f"nslt_{n}.json.gz", "rt") as f:
        assert len(subset) == len(json.load(f)) == size
    assert load_subset(name.lower()) == subset
    chosen = filter_instances(instances, subset=name)
    known = {i.video_id for i in instances}
    assert len(chosen) == len(set(subset) & known)  # the few ids v0.3 lacks match nothing
    assert all(subset[i.video_id] == i.split for i in chosen)  # official splits agree
    if name == "WLASL100":
        assert len(chosen) == 2038 and len({i.gloss for i in chosen}) == 100


def test_subset_by_path_and_unknown_name(tmp_path):
    path = tmp_path / "nslt_mine.json"
    path.write_text(json.dumps({"00335": {"subset": "test", "action": [0, 1, 40]}}))
    assert load_subset(path) == {"00335": "test"}
    with pytest.raises(ValueError, match="WLASL100"):
        load_subset("WLASL42")


def test_filters(instances):
    book_drink = filter_instances(instances, glossary=["Book", "drink "])
    assert {i.gloss for i in book_drink} == {"book", "drink"}
    assert len(book_drink) == sum(i.gloss in ("book", "drink") for i in instances)
    assert filter_instances(instances, glossary=set()) == []
    assert filter_instances(instances) == instances
    aslpro_test = filter_instances(instances, sources={"aslpro"}, splits={"test"})
    assert aslpro_test and all(i.source == "aslpro" and i.split == "test" for i in aslpro_test)
    combined = filter_instances(instances, glossary={"book"}, subset="WLASL100", splits=["train"])
    assert combined == [i for i in book_drink if i.gloss == "book" and i.split == "train"
                        and i.video_id in load_subset("WLASL100")]
    with pytest.raises(ValueError, match="split"):
        filter_instances(instances, splits={"dev"})


def test_signer_independent_split(instances):
    a = signer_independent_split(instances, seed=0)
    assert a == signer_independent_split(instances, seed=0)
    assert a != signer_independent_split(instances, seed=1)
    splits_of: dict[int, set[str]] = {}
    for inst in a:
        splits_of.setdefault(inst.signer_id, set()).add(inst.split)
    assert all(len(s) == 1 for s in splits_of.values())
    counts = Counter(i.split for i in a)
    assert 0.08 < counts["test"] / len(a) < 0.13 and 0.08 < counts["val"] / len(a) < 0.13
    # Everything but the split is kept, in the same order.
    assert [(i.video_id, i.bbox, i.frame_start) for i in a] == [(i.video_id, i.bbox, i.frame_start) for i in instances]
    # Whole signers move, so some glosses lose their test clip; train must keep them all.
    assert glosses_without_split(a, "train") == []
    assert len(glosses_without_split(a, "test")) < 0.2 * 2000


def test_signer_split_of_wlasl100_covers_every_gloss(instances):
    subset = filter_instances(instances, subset="WLASL100")
    for seed in (0, 1):
        resplit = signer_independent_split(subset, seed=seed)
        assert glosses_without_split(resplit, "test") == []
    pooled = signer_independent_split(subset, seed=0, pool=2)
    assert {i.signer_id for i in pooled if i.split == "test"}.isdisjoint(
        {i.signer_id for i in pooled if i.split != "test"})


def test_glosses_without_split_on_the_official_split(instances):
    assert len(glosses_without_split(instances, "test")) == 1
    assert glosses_without_split(instances[:3], "val") == ["book"]
    with pytest.raises(ValueError):
        glosses_without_split(instances, "dev")


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.5, 0.5, 0.5), (1.1, -0.1, 0.0)])
def test_split_rejects_bad_fractions(instances, fractions):
    with pytest.raises(ValueError, match="fractions"):
        signer_independent_split(instances[:10], seed=0, fractions=fractions)


def test_clip_filename():
    assert clip_filename("00335") == "00335.mp4"
    for bad in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            clip_filename(bad)


def test_malformed_metadata_is_reported(tmp_path):
    path = tmp_path / "bad.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump([{"gloss": "book", "instances": [{"video_id": "1", "url": "u"}]}], f)
    with pytest.raises(WlaslFormatError, match=r"^The WLASL metadata file bad.json.gz is not WLASL v0.3: instance '1' "
                       r"of gloss 'book' lacks \["):
        load_wlasl(path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(WlaslFormatError, match=r"^The WLASL metadata file bad.json.gz is not readable JSON"):
        load_wlasl(path)
    with pytest.raises(DatasetError, match=r"^The WLASL metadata file missing.json does not exist\.$"):
        load_wlasl(tmp_path / "missing.json")
    # One family: every one of these is a SignLensError, which the app, the API and the CLIs catch.
    assert issubclass(WlaslFormatError, TrainingError) and issubclass(TrainingError, SignLensError)
    assert wlasl.DEFAULT_METADATA.exists()
