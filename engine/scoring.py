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
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch


def score_candidates(
    model: Any,
    prefix: dict[str, torch.Tensor],
    candidates: list[list[int]],
    *,
    batch_size: int = 512,
) -> torch.Tensor:
    """Log-probability of each candidate token sequence after `prefix` (batch of 1).

    `prefix` holds the processor's outputs (input_ids, attention_mask, pixel_values).
    Returns a float32 tensor of shape [len(candidates)].
    """
    if not candidates or any(len(c) == 0 for c in candidates):
        raise ValueError("every candidate needs at least one token")
    cache_arg = _cache_argument(model)
    with torch.no_grad():
        out = model(**prefix, use_cache=True, logits_to_keep=1)
        cache = _output_cache(out)
        prefix_len = prefix["input_ids"].shape[1]
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        scores = torch.tensor([first[c[0]].item() for c in candidates], dtype=torch.float32)

        chunks = [list(range(i, min(i + batch_size, len(candidates)))) for i in range(0, len(candidates), batch_size)]
        for number, chunk in enumerate(chunks):
            rows = [candidates[i] for i in chunk if len(candidates[i]) > 1]
            if not rows:
                continue
            ids, positions, mask, targets = _tree_inputs(rows, prefix_len, dtype=_mask_dtype(model))
            device = prefix["input_ids"].device
            chunk_cache = cache if number == len(chunks) - 1 else copy.deepcopy(cache)
            logits = model(
                input_ids=ids.to(device)[None],
                position_ids=positions.to(device)[None],
                attention_mask=mask.to(device)[None, None],
                use_cache=True,
                **{cache_arg: chunk_cache},
            ).logits[0]
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            gathered = logprobs.gather(1, targets.to(device)[:, None])[:, 0].cpu()
            offset = 0
            for i in chunk:
                n = len(candidates[i]) - 1
                if n > 0:
                    scores[i] += gathered[offset : offset + n].sum()
                    offset += n
    return scores


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
