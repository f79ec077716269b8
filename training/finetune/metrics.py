"""Recognition metrics, WLASL convention: per instance top-k, plus per-class views.

Pure functions over (true gloss, ranked guesses) pairs, so they can be checked against
hand-computed cases (tests/test_finetune.py) without a model.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

import numpy as np


def top_k_accuracy(truth: Sequence[str], ranked: Sequence[Sequence[str]], k: int) -> float:
    """Share of instances whose true gloss is among the first k guesses."""
    if not truth:
        return 0.0
    return sum(t in list(r)[:k] for t, r in zip(truth, ranked)) / len(truth)


def per_class_accuracy(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Top-1 accuracy of each true gloss (classes with no instance are absent)."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for t, p in zip(truth, predicted):
        hits[t].append(t == p)
    return {gloss: sum(v) / len(v) for gloss, v in sorted(hits.items())}


def mean_per_class_accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Average of per-class accuracies: a rare gloss counts as much as a common one."""
    per_class = per_class_accuracy(truth, predicted)
    return sum(per_class.values()) / len(per_class) if per_class else 0.0


def confusion_matrix(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts[i, j] = instances of labels[i] predicted as labels[j]; unknown predictions are dropped."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(truth, predicted):
        if t in index and p in index:
            matrix[index[t], index[p]] += 1
    return matrix


def top_confusions(truth: Sequence[str], predicted: Sequence[str], n: int = 10) -> list[tuple[str, str, int]]:
    """The most frequent (true, predicted) mistakes, most frequent first, ties by name."""
    counts = Counter((t, p) for t, p in zip(truth, predicted) if t != p)
    return [(t, p, c) for (t, p), c in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]]


def latency_percentiles(latencies_ms: Sequence[float], percentiles: Sequence[int] = (50, 90, 99)) -> dict[str, float]:
    if not latencies_ms:
        return {}
    values = np.percentile(np.asarray(latencies_ms, dtype=float), percentiles)
    return {f"p{p}": float(v) for p, v in zip(percentiles, values)}
