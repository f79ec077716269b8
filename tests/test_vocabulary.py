"""The shipped core glossary and its loader.

The glossary is checked against the real WLASL v0.3 metadata and the seed glossary it
was derived from, so that a hand edit which breaks either link fails here.
"""

import csv
from pathlib import Path

import pytest

from conftest import shared_path
from engine.vocabulary import DEFAULT_VOCABULARY, Vocabulary, VocabularyError, load_vocabulary
from training.curate.wlasl import load_wlasl
from training.dataset import check_gloss

REPLACEMENTS = DEFAULT_VOCABULARY.with_name("asl_core_320_replacements.tsv")


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return load_vocabulary(DEFAULT_VOCABULARY)


@pytest.fixture(scope="module")
def seed() -> list[dict[str, str]]:
    # The product's original glossary: team data beside the repository, never committed.
    return _read_tsv(shared_path("data", "glossary", "seed_glossary.tsv"))


@pytest.fixture(scope="module")
def replacements() -> list[dict[str, str]]:
    return _read_tsv(REPLACEMENTS)


# --- the shipped glossary ---------------------------------------------------------------


def test_shipped_glossary_has_320_glosses_in_the_seed_categories(vocab, seed):
    assert len(vocab) == 320
    assert len(set(vocab.glosses)) == 320
    seed_categories = list(dict.fromkeys(row["category"] for row in seed))
    assert list(vocab.categories) == seed_categories
    assert len(vocab.categories) == 15
    assert len(vocab.categories["basic verbs"]) == 40
    assert sum(len(g) for g in vocab.categories.values()) == 320
    assert vocab.source == str(DEFAULT_VOCABULARY)


def test_every_gloss_is_a_wlasl_gloss(vocab):
    wlasl = {instance.gloss for instance in load_wlasl()}  # the copy shipped in assets/wlasl/
    assert len(wlasl) == 2000
    assert sorted(g for g in vocab.glosses if g not in wlasl) == []
    # Every gloss people can pick passes the rule a relabel or a saved clip is checked by.
    assert all(check_gloss(g) == g for g in wlasl | set(vocab.glosses))


def test_seed_glosses_in_wlasl_keep_their_category(vocab, seed):
    kept = [row for row in seed if row["in_wlasl"] == "yes"]
    assert len(kept) == 282
    misplaced = [
        (row["category"], row["gloss"])
        for row in kept
        if row["gloss"].lower() not in vocab.categories.get(row["category"], ())
    ]
    assert misplaced == []


def test_every_missing_seed_gloss_has_a_recorded_replacement(vocab, seed, replacements):
    missing = {(row["category"], row["gloss"]) for row in seed if row["in_wlasl"] == "no"}
    assert len(missing) == 37
    recorded = {(row["category"], row["seed_gloss"]): row for row in replacements}
    assert missing <= set(recorded)
    for key in missing:
        row = recorded[key]
        assert row["wlasl_gloss"] in vocab.categories[row["category"]], key
        assert row["reason"].strip(), key


def test_replacements_table_lists_only_changes(vocab, seed, replacements):
    assert list(replacements[0]) == ["category", "seed_gloss", "wlasl_gloss", "reason"]
    unchanged = {row["gloss"] for row in seed if row["in_wlasl"] == "yes"}
    assert [r["seed_gloss"] for r in replacements if r["seed_gloss"] in unchanged] == []
    added = [r for r in replacements if r["seed_gloss"] == ""]
    assert [(r["category"], r["wlasl_gloss"] in vocab) for r in added] == [("basic verbs", True)]
    assert len(replacements) == 38


# --- the loader --------------------------------------------------------------------------


def test_loader_reads_categories_comments_and_blank_lines(tmp_path):
    path = tmp_path / "small.txt"
    path.write_text("# a comment\n#\nloose\n\n## colors\n  red \nBlue\n## time\nnow\n", "utf-8")
    vocab = load_vocabulary(path)
    assert vocab.glosses == ("loose", "red", "Blue", "now")
    assert vocab.categories == {
        "uncategorized": ("loose",),
        "colors": ("red", "Blue"),
        "time": ("now",),
    }
    assert "Blue" in vocab and "blue" not in vocab
    assert len(vocab) == 4


def test_loader_accepts_a_plain_list(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("book\nlook at\n", "utf-8")
    vocab = load_vocabulary(str(path))
    assert vocab.glosses == ("book", "look at")
    assert vocab.categories == {"uncategorized": ("book", "look at")}
    assert vocab.source == str(path)


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nowhere.txt"
    with pytest.raises(VocabularyError, match="nowhere.txt") as info:
        load_vocabulary(path)
    assert isinstance(info.value, ValueError)


def test_empty_vocabulary_is_rejected(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("# only a comment\n\n## colors\n", "utf-8")
    with pytest.raises(VocabularyError, match=r"empty\.txt.*no glosses"):
        load_vocabulary(path)


def test_duplicate_gloss_names_it_and_both_lines(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text("## a\nbook\nred\n## b\nbook\n", "utf-8")
    with pytest.raises(VocabularyError) as info:
        load_vocabulary(path)
    message = str(info.value)
    assert "'book'" in message and "dup.txt" in message
    assert "lines 2 and 5" in message
