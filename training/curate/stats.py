"""How a dataset is spread: clips per gloss, split, source and signer, as a table and a plot.

A curator's first questions about a dataset are "which glosses are thin?", "is every
gloss in test?" and "does one site or one signer dominate?"; these answer them for a
built dataset (its rows) or for a selection that is not downloaded yet (the same keys).

    from training import stats
    s = stats.compute_stats(rows)          # rows: mappings with gloss, split, source, signer_id
    print(stats.format_table(s))
    stats.plot_stats(s, "stats.png", title="wlasl100")
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training.atomic import atomic_path

SPLITS = ("train", "val", "test")
_COLORS = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868"}


@dataclass(frozen=True)
class DatasetStats:
    total: int
    # split -> clips
    by_split: dict[str, int]
    # gloss -> split -> clips, glosses sorted
    by_gloss: dict[str, dict[str, int]]
    # source site ("aslpro", ..., "user") -> split -> clips
    by_source: dict[str, dict[str, int]]
    # signer id (as text; "-1" = unknown, the user's clips) -> split -> clips
    by_signer: dict[str, dict[str, int]]
    # split -> glosses with no clip there: they cannot be evaluated (test) or tuned on (val)
    glosses_without: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_stats(rows: Iterable[Mapping[str, Any]]) -> DatasetStats:
    by_gloss: dict[str, Counter] = defaultdict(Counter)
    by_source: dict[str, Counter] = defaultdict(Counter)
    by_signer: dict[str, Counter] = defaultdict(Counter)
    by_split: Counter = Counter()
    total = 0
    for row in rows:
        split = row["split"]
        by_gloss[row["gloss"]][split] += 1
        by_source[row["source"]][split] += 1
        by_signer[str(row["signer_id"])][split] += 1
        by_split[split] += 1
        total += 1

    def table(counts: dict[str, Counter], order) -> dict[str, dict[str, int]]:
        return {key: {s: counts[key][s] for s in SPLITS} for key in sorted(counts, key=order)}

    def by_size(counts):
        return lambda key: (-sum(counts[key].values()), key)

    return DatasetStats(
        total=total,
        by_split={s: by_split[s] for s in SPLITS},
        by_gloss=table(by_gloss, lambda g: g),
        by_source=table(by_source, by_size(by_source)),
        by_signer=table(by_signer, by_size(by_signer)),
        glosses_without={s: sorted(g for g, c in by_gloss.items() if not c[s]) for s in SPLITS},
    )


def gloss_rows(stats: DatasetStats) -> list[list[Any]]:
    """[gloss, train, val, test, total] per gloss, fewest clips first (the ones to fix)."""
    rows = [[g, c["train"], c["val"], c["test"], sum(c.values())] for g, c in stats.by_gloss.items()]
    return sorted(rows, key=lambda r: (r[4], r[0]))


def format_table(stats: DatasetStats, *, top: int = 15) -> str:
    """Plain-text summary: splits, sources, signers, and the thinnest glosses."""
    lines = [f"{stats.total} clips, {len(stats.by_gloss)} glosses, {len(stats.by_signer)} signers"]

    def section(title: str, table: Mapping[str, Mapping[str, int]], limit: int | None) -> None:
        lines.append("")
        lines.append(f"{title:<20}{'train':>7}{'val':>7}{'test':>7}{'total':>8}")
        items = list(table.items())
        for key, c in items[:limit]:
            lines.append(f"{key[:20]:<20}{c['train']:>7}{c['val']:>7}{c['test']:>7}{sum(c.values()):>8}")
        if limit is not None and len(items) > limit:
            lines.append(f"... {len(items) - limit} more")

    section("split", {s: {t: (n if t == s else 0) for t in SPLITS} for s, n in stats.by_split.items()}, None)
    section("source", stats.by_source, None)
    section("signer", stats.by_signer, top)
    thinnest = {r[0]: dict(zip(SPLITS, r[1:4])) for r in gloss_rows(stats)}
    section("gloss (fewest)", thinnest, top)
    for split in ("val", "test"):
        missing = stats.glosses_without[split]
        if missing:
            shown = ", ".join(missing[:top]) + (" ..." if len(missing) > top else "")
            lines.append(f"\n{len(missing)} glosses have no {split} clip: {shown}")
    return "\n".join(lines)


def plot_stats(stats: DatasetStats, path: str | Path, *, title: str = "", top: int = 20) -> Path:
    """Four panels (splits, sources, clips-per-gloss histogram, top signers) to a PNG, atomically."""
    # The object API, not pyplot: no global figure state, safe from the web app's threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    fig = Figure(figsize=(12, 8), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    fig.suptitle(f"{title}: {stats.total} clips, {len(stats.by_gloss)} glosses, "
                 f"{len(stats.by_signer)} signers" if title else f"{stats.total} clips")

    ax = axes[0][0]
    ax.bar(list(SPLITS), [stats.by_split[s] for s in SPLITS], color=[_COLORS[s] for s in SPLITS])
    ax.set_title("clips per split")
    _stacked_barh(axes[0][1], stats.by_source, "clips per source", top)

    ax = axes[1][0]
    per_gloss = [sum(c.values()) for c in stats.by_gloss.values()]
    if per_gloss:
        ax.hist(per_gloss, bins=range(0, max(per_gloss) + 2), color="#4C72B0", align="left")
    ax.set_title("clips per gloss (how many glosses have n clips)")
    ax.set_xlabel("clips")
    ax.set_ylabel("glosses")
    signers = {f"signer {k}" if k != "-1" else "user clips": v for k, v in stats.by_signer.items()}
    _stacked_barh(axes[1][1], signers, f"clips per signer (top {top})", top)
    for ax in (axes[0][0], axes[1][0]):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (axes[0][1], axes[1][1], axes[1][0]):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()

    with atomic_path(path) as temp:
        fig.savefig(temp, format="png")
    return path


def _stacked_barh(ax, table: Mapping[str, Mapping[str, int]], title: str, top: int) -> None:
    keys = list(table)[:top][::-1]  # biggest at the top
    left = [0] * len(keys)
    for split in SPLITS:
        values = [table[k][split] for k in keys]
        ax.barh(keys, values, left=left, color=_COLORS[split], label=split)
        left = [a + b for a, b in zip(left, values)]
    ax.set_title(title)
    if keys:
        ax.legend(loc="lower right", fontsize="small")
