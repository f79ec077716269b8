"""Closed-vocabulary scoring: log p(gloss | frames, prompt) for every gloss, cheaply.

Asking the model to generate a word gives one answer, often outside the vocabulary, and
no calibrated alternatives. Scoring every gloss gives a ranked list with probabilities,
which the Live tab needs for "uncertain" marks and 2nd/3rd guesses.

The naive way runs prompt + frames + gloss through the model once per gloss (320 full
forwards over ~2,100 tokens). Here the prompt and frames are prefilled ONCE; then all
candidates go through the model together in a single sequence laid out as a tree: each
candidate token attends to the shared prefix (through the KV cache) and to the earlier
tokens of its own candidate only, enforced by a custom 4D attention mask, with position
ids continuing from the prefix. The prefix is never copied per candidate, so memory
stays at one prefill plus a few hundred candidate tokens.

A candidate is the gloss's tokens followed by the end-of-turn token, so "book" and
"bookstore" are told apart. Its score is the sum of its tokens' log-probabilities.

Most of that pass is wasted on glosses that cannot make the top k: `rank_candidates`
scores candidates best first-token bound first and stops as soon as the rest cannot
catch up (issue 11), returning the same top k as scoring everything.
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Ranking:
    """Candidates ranked by log p(candidate | prefix), with what was left unscored.

    `scores` holds the full score of every scored candidate and, for an unscored one,
    its first-token bound (never below its full score).
    """

    # Candidate indices, best first; ties go to the lower index, so the order is the same
    # whether or not pruning stopped early.
    top: tuple[int, ...]
    # float32 [len(candidates)]: full score where `scored`, first-token bound elsewhere.
    scores: torch.Tensor
    # bool [len(candidates)]: which candidates went through the candidate pass.
    scored: torch.Tensor
    # log of an upper bound on the softmax denominator, sum(exp(score)) over all
    # candidates: exact when all were scored, else see `_log_mass_bound`.
    log_total: float

    @property
    def scored_count(self) -> int:
        return int(self.scored.sum())

    def probabilities(self) -> torch.Tensor:
        """Probability of each `top` candidate, a lower bound on the full softmax's.

        The denominator counts the unscored candidates at an upper bound of their mass, so
        the numbers can only come out low (up to float rounding): an answer that full
        scoring would call uncertain never looks sure. With every candidate scored they
        are the softmax itself.
        """
        top = torch.tensor(self.top, dtype=torch.long)
        return torch.exp(self.scores[top].double() - self.log_total).float()


def rank_candidates(
    model: Any,
    prefix: dict[str, torch.Tensor],
    candidates: list[list[int]],
    *,
    top_k: int,
    batch_size: int = 512,
    prune: bool = True,
) -> Ranking:
    """The `top_k` best candidates after `prefix` (batch of 1), exactly as full scoring ranks them.

    Every token's log-probability is <= 0, so a candidate's score can never exceed the
    log-probability of its first token, which the prefill's last logits give for all
    candidates at once. With `prune`, a few of the best-bound candidates go through the
    tree pass first; then, in passes that at most double, only those whose bound still
    beats the k-th best score so far, and scoring stops once none does: the candidates
    left cannot enter the top k.
    Even one-token glosses need the pass (their end-of-turn token is scored too), so the
    bound alone never settles a score. Without `prune` every candidate is scored, in
    chunks of `batch_size`. Identical token sequences are scored once and share a score.
    `prefix` is whatever the model's forward takes besides the cache: the processor's
    outputs, or input_ids with image features computed earlier (`mm_encoder_outputs`,
    as `Engine.recognize_encoded` passes them) instead of pixel_values.
    """
    if not candidates or any(len(c) == 0 for c in candidates):
        raise ValueError("every candidate needs at least one token")
    if top_k < 1:
        raise ValueError("top_k must be at least 1")
    top_k = min(top_k, len(candidates))
    # One row per distinct token sequence; `first_use[u]` is its lowest candidate index.
    distinct: dict[tuple[int, ...], int] = {}
    owner = [distinct.setdefault(tuple(c), len(distinct)) for c in candidates]
    rows = [list(seq) for seq in distinct]
    first_use = [0] * len(rows)
    for index in reversed(range(len(candidates))):
        first_use[owner[index]] = index

    cache_arg = _cache_argument(model)
    device = prefix["input_ids"].device
    prefix_len = prefix["input_ids"].shape[1]
    with torch.no_grad():
        out = model(**prefix, use_cache=True, logits_to_keep=1)
        cache = _output_cache(out)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu()
        bounds = first[torch.tensor([row[0] for row in rows])]
        row_scores = bounds.clone()
        row_scored = torch.zeros(len(rows), dtype=torch.bool)
        bound_values = bounds.tolist()
        order = sorted(range(len(rows)), key=lambda u: (-bound_values[u], first_use[u]))
        take = min(batch_size, _first_chunk(top_k)) if prune else batch_size
        done = 0
        while done < len(order):
            batch = order[done : done + take]
            done += len(batch)
            last = done == len(order)  # the last pass may extend the prefix cache itself
            row_scores[batch] += _continuations(model, cache if last else copy.deepcopy(cache), [rows[u] for u in batch],
                                                prefix_len, device, cache_arg)
            row_scored[batch] = True
            if prune:
                # Only waiting candidates whose bound outranks the k-th best score so far
                # can still enter the top k, and the k-th score only rises as more are scored.
                kth = _kth_best(row_scores, row_scored, owner, top_k)
                contenders = 0
                while done + contenders < len(order) and _outranks(bound_values[order[done + contenders]], first_use[order[done + contenders]], kth):
                    contenders += 1
                if contenders == 0:
                    break
                take = min(batch_size, contenders, 2 * take)  # grow geometrically: the k-th score may rise soon
    index = torch.tensor(owner)
    scores, scored = row_scores[index], row_scored[index]
    values = scores.tolist()
    top = sorted(range(len(candidates)), key=lambda i: (-values[i], i))[:top_k]
    counts = torch.bincount(index, minlength=len(rows)).tolist()
    return Ranking(tuple(top), scores, scored, _log_mass_bound(rows, counts, row_scores, row_scored))


def score_candidates(
    model: Any,
    prefix: dict[str, torch.Tensor],
    candidates: list[list[int]],
    *,
    batch_size: int = 512,
) -> torch.Tensor:
    """Log-probability of each candidate token sequence after `prefix` (batch of 1).

    `prefix` holds the processor's outputs (input_ids, attention_mask, pixel_values).
    Returns a float32 tensor of shape [len(candidates)]: every candidate scored, no pruning.
    """
    return rank_candidates(model, prefix, candidates, top_k=1, batch_size=batch_size, prune=False).scores


def _first_chunk(top_k: int) -> int:
    """Candidates in the first pruned pass: a few times top_k, so that the k-th best score
    usually clears the remaining bounds at once, yet far fewer than a whole vocabulary. A
    forward has a fixed cost (reading every weight), hence not smaller than 32."""
    return max(32, 4 * top_k)


def _kth_best(scores: torch.Tensor, scored: torch.Tensor, owner: list[int], top_k: int) -> tuple[float, int] | None:
    """(score, index) of the k-th best scored candidate, or None while fewer are scored.

    Ranks compare (score, -index), the tie rule of the final order.
    """
    values, flags = scores.tolist(), scored.tolist()
    keys = sorted((-values[u], i) for i, u in enumerate(owner) if flags[u])
    if len(keys) < top_k:
        return None
    return -keys[top_k - 1][0], keys[top_k - 1][1]


def _outranks(bound: float, index: int, kth: tuple[float, int] | None) -> bool:
    """Whether a waiting candidate at its bound could still rank above the k-th best one:
    an equal bound counts when its index is lower, since ties go to the lower index."""
    return kth is None or bound > kth[0] or (bound == kth[0] and index < kth[1])


def _log_mass_bound(rows: list[list[int]], counts: list[int], scores: torch.Tensor, scored: torch.Tensor) -> float:
    """log of an upper bound on sum(exp(score)) over all candidates (`counts[u]` of row u).

    Scored rows count exactly; unscored rows are grouped by first token t, each row
    at most p(t) = exp(its bound). When no row is a prefix of another (each ends with
    its end-of-turn token), distinct rows starting with t are disjoint answers, so
    together they hold at most p(t): the group then counts at most p(t) minus what its
    scored rows already hold (times its largest duplicate count). In float64, so the
    subtraction loses nothing that matters.
    """
    values, flags = scores.double().exp().tolist(), scored.tolist()
    prefixes = {tuple(row[:n]) for row in rows for n in range(1, len(row))}
    prefix_free = not any(tuple(row) in prefixes for row in rows)
    total = sum(counts[u] * values[u] for u in range(len(rows)) if flags[u])
    groups: dict[int, list[int]] = {}
    for u, row in enumerate(rows):
        groups.setdefault(row[0], []).append(u)
    for members in groups.values():
        waiting = [u for u in members if not flags[u]]
        if not waiting:
            continue
        first_token = values[waiting[0]]  # an unscored row's score is its bound, p(t)
        mass = sum(counts[u] for u in waiting) * first_token
        if prefix_free:
            left = max(0.0, first_token - sum(values[u] for u in members if flags[u]))
            mass = min(mass, max(counts[u] for u in waiting) * left)
        total += mass
    return math.log(total)


def _continuations(model: Any, cache: Any, rows: list[list[int]], prefix_len: int, device: Any, cache_arg: str) -> torch.Tensor:
    """Sum of the log-probabilities of each row's tokens after its first, in one tree pass.

    The forward appends to the `cache` it is given: pass a copy unless no chunk follows.
    """
    totals = torch.zeros(len(rows), dtype=torch.float32)
    long_rows = [r for r, row in enumerate(rows) if len(row) > 1]
    if not long_rows:
        return totals
    ids, positions, mask, targets = _tree_inputs([rows[r] for r in long_rows], prefix_len, dtype=_mask_dtype(model))
    logits = model(
        input_ids=ids.to(device)[None],
        position_ids=positions.to(device)[None],
        attention_mask=mask.to(device)[None, None],
        use_cache=True,
        **{cache_arg: cache},
    ).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    gathered = logprobs.gather(1, targets.to(device)[:, None])[:, 0].cpu()
    offset = 0
    for r in long_rows:
        n = len(rows[r]) - 1
        totals[r] = gathered[offset : offset + n].sum()
        offset += n
    return totals


def score_candidates_reference(model: Any, prefix: dict[str, torch.Tensor], candidates: list[list[int]]) -> torch.Tensor:
    """The obvious way: one full forward of prefix + candidate per candidate.

    Slow (it re-encodes the frames every time); kept to check `score_candidates`
    against and to measure how much faster it is (benchmarks/bench_scoring.py).
    """
    scores = []
    with torch.no_grad():
        prefix_len = prefix["input_ids"].shape[1]
        for candidate in candidates:
            tail = torch.tensor([candidate], device=prefix["input_ids"].device)
            inputs = dict(prefix)
            inputs["input_ids"] = torch.cat([prefix["input_ids"], tail], dim=1)
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
            logits = model(**inputs).logits[0].float()
            logprobs = torch.log_softmax(logits[prefix_len - 1 : -1], dim=-1)
            scores.append(logprobs.gather(1, tail[0][:, None]).sum().item())
    return torch.tensor(scores, dtype=torch.float32)


def _tree_inputs(rows: list[list[int]], prefix_len: int, *, dtype: torch.dtype):
    """Pack candidates (all but their last token) into one sequence with a tree mask.

    Token k of a candidate sits at position prefix_len + k, sees the whole prefix and
    tokens 0..k of its own candidate, and predicts token k + 1.
    """
    ids, positions, owner, targets = [], [], [], []
    for row, candidate in enumerate(rows):
        for k in range(len(candidate) - 1):
            ids.append(candidate[k])
            positions.append(prefix_len + k)
            owner.append(row)
            targets.append(candidate[k + 1])
    length = len(ids)
    owner_t = torch.tensor(owner)
    index = torch.arange(length)
    same = owner_t[:, None] == owner_t[None, :]
    visible = same & (index[None, :] <= index[:, None])
    allowed = torch.cat([torch.ones(length, prefix_len, dtype=torch.bool), visible], dim=1)
    # Additive mask: works for eager attention (added to scores) and SDPA alike.
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return torch.tensor(ids), torch.tensor(positions), mask, torch.tensor(targets)


def _mask_dtype(model: Any) -> torch.dtype:
    dtype = getattr(model, "dtype", torch.float32)
    return dtype if dtype.is_floating_point else torch.float32


def _cache_argument(model: Any) -> str:
    """transformers >= 5.24 names the KV cache `cache`; earlier releases `past_key_values`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # through a PEFT wrapper
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _output_cache(outputs: Any) -> Any:
    cache = getattr(outputs, "cache", None)
    return cache if cache is not None else outputs.past_key_values
