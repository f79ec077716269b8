"""Pruned ranking (issue 11): the same top k as scoring every gloss, for less work."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_config
from engine import Engine
from engine.prompt import END_OF_TURN
from engine.scoring import rank_candidates, score_candidates
from engine.video import load_clip


def random_inputs(engine: Engine, rng: np.random.Generator) -> dict:
    frames = [rng.integers(0, 255, (32, 40, 3), dtype=np.uint8) for _ in range(int(rng.integers(1, 5)))]
    clip = load_clip(frames, num_frames=4, limits=engine.config.limits)
    return engine._model_inputs(engine._require_model(), clip)


def random_vocabulary(engine: Engine, rng: np.random.Generator, size: int) -> list[list[int]]:
    """Random answers of 1-3 ordinary tokens + end of turn, with shared first tokens and
    exact duplicates (which tie) mixed in."""
    tokenizer = engine._require_model().processor.tokenizer
    special = set(tokenizer.all_special_ids) | set(tokenizer.convert_tokens_to_ids(["<|im_start|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]))
    ordinary = [t for t in range(len(tokenizer)) if t not in special]
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    answers = [[int(t) for t in rng.choice(ordinary, int(rng.integers(1, 4)))] + [end] for _ in range(size)]
    for _ in range(size // 8):
        source = answers[int(rng.integers(size))]
        if rng.random() < 0.5:
            answers.insert(int(rng.integers(len(answers) + 1)), list(source))  # a tie
        else:
            answers.append([source[0], int(rng.choice(ordinary)), end])  # same first-token bound
    return answers


@pytest.fixture(scope="module")
def ending_engine(tiny_model_dir):
    """The tiny model made to end its answer after any token, as a fine-tuned model ends
    after a gloss: an end-of-turn bias on the output layer. Then most scores sit close
    to their first-token bounds, the case pruning is for."""
    engine = Engine(tiny_config(tiny_model_dir)).start()
    model = engine._require_model().model
    head = model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[engine._require_model().processor.tokenizer.convert_tokens_to_ids(END_OF_TURN)] = 12.0
    model.lm_head = biased
    yield engine
    engine.close()


@pytest.mark.parametrize("which", ["random", "ending"])
def test_pruned_top_k_equals_full_top_k(which, tiny_engine, ending_engine):
    engine = tiny_engine if which == "random" else ending_engine
    model = engine._require_model().model
    rng = np.random.default_rng(11)
    skipped = 0
    for trial in range(12):
        inputs = random_inputs(engine, rng)
        candidates = random_vocabulary(engine, rng, int(rng.integers(20, 120)))
        top_k = int(rng.integers(1, 8))
        batch_size = int(rng.choice([7, 64, 512]))
        full = rank_candidates(model, inputs, candidates, top_k=top_k, batch_size=batch_size, prune=False)
        pruned = rank_candidates(model, inputs, candidates, top_k=top_k, batch_size=batch_size, prune=True)
        assert full.scored.all()
        assert pruned.top == full.top, trial
        top = list(full.top)
        assert torch.allclose(pruned.scores[top], full.scores[top], atol=1e-4)
        # Ties are broken by position in the vocabulary, in both modes.
        values = full.scores.tolist()
        assert list(full.top) == sorted(range(len(candidates)), key=lambda i: (-values[i], i))[:top_k]
        # Unscored entries hold bounds that really are above the full scores.
        waiting = ~pruned.scored
        assert (pruned.scores[waiting] >= full.scores[waiting] - 1e-4).all()
        skipped += int(waiting.sum())
    if which == "ending":
        assert skipped > 0  # pruning does skip candidates where scores sit near their bounds


def test_duplicates_share_one_score_and_tie_in_vocabulary_order(tiny_engine):
    inputs = random_inputs(tiny_engine, np.random.default_rng(3))
    candidates = random_vocabulary(tiny_engine, np.random.default_rng(4), 40)
    best = rank_candidates(tiny_engine._require_model().model, inputs, candidates, top_k=1, prune=False).top[0]
    candidates = candidates[:best] + [list(candidates[best])] + candidates[best:]  # the winner twice, in a row
    ranking = rank_candidates(tiny_engine._require_model().model, inputs, candidates, top_k=3)
    assert ranking.top[:2] == (best, best + 1)
    assert ranking.scores[best] == ranking.scores[best + 1]
    probabilities = ranking.probabilities()
    assert probabilities[0] == probabilities[1]


def test_pruned_probabilities_are_lower_bounds_that_never_look_surer(ending_engine):
    model = ending_engine._require_model().model
    rng = np.random.default_rng(5)
    pruned_somewhere = False
    for trial in range(10):
        inputs = random_inputs(ending_engine, rng)
        candidates = random_vocabulary(ending_engine, rng, 100)
        if trial % 2:  # one answer a prefix of another: the per-first-token bound must not be used
            candidates += [c[:-1] for c in candidates[:5] if len(c) > 2]
        full = rank_candidates(model, inputs, candidates, top_k=3, prune=False)
        pruned = rank_candidates(model, inputs, candidates, top_k=3)
        exact, low = full.probabilities(), pruned.probabilities()
        pruned_somewhere |= bool((~pruned.scored).any())
        assert (low <= exact * (1 + 1e-5)).all()
        # The Live tab's "uncertain" mark: any threshold the full top-1 misses, the pruned one misses too.
        for threshold in np.linspace(0, 1, 101):
            if exact[0] < threshold:
                assert low[0] < threshold
        # With everything scored the numbers are the softmax over the vocabulary.
        everything = torch.softmax(full.scores, dim=0)[list(full.top)]
        assert torch.allclose(exact, everything, atol=1e-6)
        # Everything unscored counts at its bound: what the top k leave is at least the unscored glosses' true share.
        unscored_true = torch.softmax(full.scores, dim=0)[~pruned.scored].sum()
        assert 1 - low.sum() >= unscored_true - 1e-5
    assert pruned_somewhere


def test_engine_reports_how_many_glosses_it_scored(tiny_model_dir, ending_engine):
    frames = [np.random.default_rng(6).integers(0, 255, (32, 40, 3), dtype=np.uint8) for _ in range(4)]
    pruned = ending_engine.recognize(frames, top_k=3)
    size = len(ending_engine.vocabulary)
    assert 0 < pruned.glosses_scored <= size
    assert ending_engine.config.recognition.pruned_ranking  # the default
    everything = ending_engine.recognize(frames, top_k=size)  # all of them are needed to rank them all
    assert everything.glosses_scored == size
    assert [p.gloss for p in everything.top[:3]] == [p.gloss for p in pruned.top]

    full_engine = Engine(tiny_config(tiny_model_dir, recognition={"pruned_ranking": False})).start()
    full_engine._require_model().model.lm_head = ending_engine._require_model().model.lm_head
    full = full_engine.recognize(frames, top_k=3)
    assert full.glosses_scored == size
    assert [p.gloss for p in full.top] == [p.gloss for p in pruned.top]
    assert all(low.probability <= exact.probability * (1 + 1e-5) for low, exact in zip(pruned.top, full.top))
    full_engine.close()


def test_score_candidates_still_scores_everything(tiny_engine):
    inputs = random_inputs(tiny_engine, np.random.default_rng(7))
    candidates = random_vocabulary(tiny_engine, np.random.default_rng(8), 30)
    scores = score_candidates(tiny_engine._require_model().model, inputs, candidates, batch_size=9)
    full = rank_candidates(tiny_engine._require_model().model, inputs, candidates, top_k=30, prune=False)
    assert scores.shape == (len(candidates),) and torch.allclose(scores, full.scores, atol=1e-5)
    assert scores.max() < 0


def test_unscored_mass_bound_shrinks_by_first_token_only_for_disjoint_answers():
    from engine.scoring import _log_mass_bound

    bound = math.log(0.5)  # p(first token) = 0.5
    # Two distinct answers after the same first token: together at most 0.5, and the scored one holds 0.3.
    disjoint = _log_mass_bound([[1, 2, 9], [1, 3, 9]], [1, 1], torch.tensor([math.log(0.3), bound]), torch.tensor([True, False]))
    assert math.exp(disjoint) == pytest.approx(0.5)
    # [1] is a prefix of [1, 2]: both can hold up to 0.5, the shortcut would be wrong.
    nested = _log_mass_bound([[1], [1, 2]], [1, 1], torch.tensor([bound, bound]), torch.tensor([True, False]))
    assert math.exp(nested) == pytest.approx(1.0)
    # A duplicated waiting answer counts twice.
    doubled = _log_mass_bound([[1, 2, 9], [1, 3, 9]], [1, 2], torch.tensor([math.log(0.3), bound]), torch.tensor([True, False]))
    assert math.exp(doubled) == pytest.approx(0.3 + 2 * 0.2)
