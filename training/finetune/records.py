"""Published results on the standard WLASL subsets, shown beside an evaluation's own.

The numbers and their sources live in `assets/wlasl/records.yml`. A result is put next
to them only when it was measured the way they were: a whole official subset
(WLASL100/300/1000/2000, every gloss, every source), WLASL's official split, its test
set. A signer-independent split is a harder test (no signer of the test set was seen in
training), so it is labelled as such and never compared with official-split records.

    beside = records_for(dataset.config, split="test", glosses=100)
    beside["comparable"], beside["note"], beside["records"]
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from engine import project_path

RECORDS_FILE = "assets/wlasl/records.yml"
SIGNER_NOTE = ("Signer-independent split: no test signer was seen in training, a harder test than WLASL's "
               "official split, so the published official-split records are not compared.")


@lru_cache(maxsize=1)
def load_records() -> dict[str, Any]:
    with open(project_path(RECORDS_FILE), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _rows(section: str, subset: str) -> list[dict[str, Any]]:
    data = load_records()
    out = []
    for row in data.get(section, {}).get(subset, []):
        source = data["sources"][row["source"]]
        out.append({"method": source["name"], "top1": float(row["top1"]), "cite": source["cite"],
                    "url": source["url"], "note": row.get("note", "")})
    return out


def standard_subset(config: Any) -> str:
    """The standard subset a dataset config selects ("WLASL100"...), or "" when it names none."""
    subset = (getattr(config, "subset", "") or "").upper()
    return subset if subset in load_records().get("records", {}) else ""


def narrowed_by(config: Any) -> list[str]:
    """What keeps only part of the subset (a glossary, a source filter, a cap per gloss)."""
    reasons = []
    if getattr(config, "glossary", ""):
        reasons.append("the glossary")
    if getattr(config, "sources", ()):
        reasons.append("a source filter")
    if getattr(config, "max_clips_per_gloss", 0):
        reasons.append("a cap on clips per gloss")
    return reasons


def records_for(config: Any, *, split: str) -> dict[str, Any] | None:
    """What the report shows beside its result, or None when the dataset is no standard subset."""
    subset = standard_subset(config)
    if not subset:
        return None
    rule = getattr(config, "splits", "official")
    narrowed = narrowed_by(config)
    if narrowed:
        # Said, not silently dropped: the default selection has a glossary, and a user who
        # picked WLASL100 expects to see why no record is shown.
        return {"subset": subset, "split_rule": rule, "comparable": False,
                "note": (f"{subset} narrowed by {' and '.join(narrowed)}: not the published benchmark, so the "
                         f"records are not compared. Build with glossary '' (every gloss), no source filter "
                         f"and no cap to compare."),
                "records": [], "context": []}
    if rule == "signer":
        return {"subset": subset, "split_rule": rule, "comparable": False, "note": SIGNER_NOTE,
                "records": [], "context": []}
    if split != "test":
        return {"subset": subset, "split_rule": rule, "comparable": False,
                "note": f"Evaluated on the {split} split; the published records are on the test split.",
                "records": [], "context": []}
    return {"subset": subset, "split_rule": rule, "comparable": True,
            "note": ("Official split, test set. Only the clips that could be downloaded were evaluated "
                     "(many WLASL links are dead), so the test set is smaller than the published one."),
            "records": _rows("records", subset), "context": _rows("context", subset)}


def render_markdown(beside: dict[str, Any] | None, results: list[dict[str, Any]]) -> list[str]:
    """Report lines: our top-1 next to the records, with their sources."""
    if not beside:
        return []
    lines = ["", f"## Beside the records: {beside['subset']}", "", beside["note"]]
    if not beside["comparable"]:
        return lines
    lines += ["", "| method | top-1 | source |", "|---|---|---|"]
    lines += [f"| **SignLens {r['model']}** (this evaluation) | **{r['top1']:.1%}** | — |" for r in results]
    for row in beside["records"] + beside["context"]:
        method = row["method"] + (f" ({row['note']})" if row["note"] else "")
        lines.append(f"| {method} | {row['top1']:.2f} % | [{row['cite']}]({row['url']}) |")
    return lines
