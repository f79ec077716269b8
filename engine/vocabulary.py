"""The set of signs the product can name, read from a plain text glossary.

The vocabulary lives in a text file rather than in code so that curators can edit it,
review it in a diff, and ship another one without touching the engine. Every gloss is
kept exactly as written: they are WLASL gloss names, and matching them to training
clips depends on that spelling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.config import ROOT, RecognitionConfig
from engine.errors import SignLensError

# The shipped glossary, where the config default points (absolute: any working directory)
DEFAULT_VOCABULARY = ROOT / RecognitionConfig.vocabulary

_UNCATEGORIZED = "uncategorized"


class VocabularyError(SignLensError, ValueError):
    """A glossary file that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class Vocabulary:
    """The glosses a model may answer with, in file order, with their UI grouping.

    Frozen because the prompt, the label index and the UI all read the same instance:
    a vocabulary that changed underneath them would silently shift every label.
    """

    glosses: tuple[str, ...]  # the answer space, in file order so label indexes are stable
    # category -> glosses, insertion order; groups the picker in the UI and the reports
    categories: dict[str, tuple[str, ...]]
    source: str  # path it was read from, so a saved config says which glossary was used

    def __len__(self) -> int:
        return len(self.glosses)

    def __contains__(self, gloss: object) -> bool:
        return gloss in self.glosses


def load_vocabulary(path: str | Path) -> Vocabulary:
    """Read a glossary: '## <category>' headers and one gloss per line, or a bare list.

    Errors are raised rather than skipped because a silently dropped or doubled gloss
    changes the label space a model was trained on.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VocabularyError(f"Vocabulary file {path} does not exist.") from None

    first_line: dict[str, int] = {}  # gloss -> line number, to name both lines of a duplicate
    categories: dict[str, list[str]] = {}
    category = _UNCATEGORIZED
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("##"):
            category = line[2:].strip()
            if not category:
                raise VocabularyError(f"Line {number} of {path} is a '##' header with no name.")
            continue
        if not line or line.startswith("#"):
            continue
        if line in first_line:
            raise VocabularyError(
                f"Gloss {line!r} appears twice in {path}, on lines {first_line[line]} and {number}."
            )
        first_line[line] = number
        categories.setdefault(category, []).append(line)

    if not first_line:
        lines = len(text.splitlines())
        raise VocabularyError(f"Vocabulary file {path} has no glosses in its {lines} lines.")
    return Vocabulary(
        glosses=tuple(first_line),
        categories={name: tuple(glosses) for name, glosses in categories.items()},
        source=str(path),
    )
