"""Beside the records: an evaluation on a standard WLASL subset shows the published top-1."""

from __future__ import annotations

import dataclasses
import json

from conftest import tiny_config
from gestures import write_gesture_dataset
from training.dataset import DatasetConfig
from training.finetune import records
from training.layout import DataLayout


def test_every_record_has_a_source_and_the_issue_numbers():
    data = records.load_records()
    tops = {s: [r["top1"] for r in rows] for s, rows in data["records"].items()}
    assert tops == {"WLASL100": [92.64, 92.25], "WLASL300": [86.98], "WLASL1000": [75.64], "WLASL2000": [63.52, 61.26]}
    for section in ("records", "context"):
        for rows in data[section].values():
            for row in rows:
                source = data["sources"][row["source"]]
                assert source["cite"] and source["url"].startswith("https://")


def test_only_a_whole_official_subset_is_compared():
    official = DatasetConfig(glossary="", subset="WLASL100", splits="official")
    beside = records.records_for(official, split="test")
    assert beside["comparable"] and [r["method"] for r in beside["records"]] == ["NLA-SLR", "Uni-Sign"]
    signer = records.records_for(dataclasses.replace(official, splits="signer"), split="test")
    assert not signer["comparable"] and signer["records"] == [] and "Signer-independent" in signer["note"]
    assert not records.records_for(official, split="val")["comparable"]
    # A glossary or a source filter keeps only part of the subset: no longer the benchmark, and the report says so.
    narrowed = records.records_for(dataclasses.replace(official, glossary="assets/glossaries/asl_core_320.txt"), split="test")
    assert not narrowed["comparable"] and narrowed["records"] == [] and "narrowed by the glossary" in narrowed["note"]
    both = records.records_for(dataclasses.replace(official, glossary="g.txt", sources=("aslpro",)), split="test")
    assert "narrowed by the glossary and a source filter" in both["note"] and not both["comparable"]
    assert records.records_for(DatasetConfig(glossary=""), split="test") is None
    context = records.records_for(dataclasses.replace(official, subset="WLASL300"), split="test")["context"]
    assert context[0]["top1"] == 25.6 and "2604.11225" in context[0]["url"]


def test_the_report_shows_the_result_beside_the_records(tiny_model_dir, tmp_path):
    from training.finetune.evaluate import evaluate

    layout = DataLayout.at(tmp_path / "data")
    folder = write_gesture_dataset(layout.datasets / "wlasl100", train_per_class=0, test_per_class=1)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "subset": "WLASL100", "splits": "official"}))
    report = evaluate("wlasl100", tiny_config(tiny_model_dir), layout, out_dir=tmp_path / "out")
    assert report["beside_records"]["comparable"]
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [r["top1"] for r in saved["beside_records"]["records"]] == [92.64, 92.25]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Beside the records: WLASL100" in text
    assert "| NLA-SLR | 92.64 % | [Zuo, Wei, Mak" in text and "Uni-Sign" in text
    assert "**SignLens base** (this evaluation)" in text

    (folder / "config.json").write_text(json.dumps({**config, "subset": "WLASL100", "splits": "signer"}))
    evaluate("wlasl100", tiny_config(tiny_model_dir), layout, out_dir=tmp_path / "signer")
    text = (tmp_path / "signer" / "report.md").read_text()
    assert "Signer-independent split" in text and "92.64" not in text
