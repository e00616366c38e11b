"""A small knowledge-graph triplet store with entity matching, for knowledge-augmented VQA.

`KnowledgeGraph.from_slake(root)` reads SLAKE's English KG (``KG/en_disease.csv``,
``KG/en_organ.csv``, ``KG/en_organ_rel.csv``: '#'-separated head#relation#tail rows, 2,600
triplets on the shared copy) through `medmm.data.datasets.slake.load_kg`.

Entity matching: every head entity (and every ``alias`` tail, pointing back to its head) is
indexed under its normalised form (lower case, punctuation -> space, a plural ``-s`` dropped
from words longer than three letters); the question's word n-grams (longest first, no overlap)
are looked up in that index. `retrieve(question, k)` returns the top-k triplets of the matched
entities, ranked by (entity order in the question, relation priority, file order), and
`verbalise` turns a triplet into text such as ``"lung - function - breathing"``.

Torch-free: the VQA task feeds the verbalised facts to its text encoder.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medmm.errors import BadInputError

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}‘’“”]")
# Relations most likely to help answer a radiology question come first (ties: file order).
RELATION_PRIORITY = (
    "function",
    "location",
    "belong to",
    "position",
    "component",
    "symptom",
    "cause",
    "treatment",
    "definition",
    "shape",
    "alias",
    "effect",
    "characteristic",
    "classification",
    "length",
    "nature",
    "susceptible population",
    "infectivity",
    "prevention",
    "description",
)
# Words that are KG entity names in other contexts but carry no meaning on their own here.
_STOP = {"the", "a", "an", "of", "in", "on", "is", "are", "and", "or", "what", "which", "this", "image"}


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def normalise_text(text: str) -> list[str]:
    """Words of `text` as used for matching: lower case, punctuation removed, crude singular."""
    return [_singular(w) for w in _PUNCT.sub(" ", str(text).lower()).split()]


@dataclass(frozen=True)
class Triplet:
    """One fact: head entity, relation, tail value (as written in the KG file)."""

    head: str
    relation: str
    tail: str


class KnowledgeGraph:
    """Triplets indexed by normalised head entity (and alias), with n-gram entity matching.

    Args:
        triplets: (head, relation, tail) tuples.
        max_tail_words: verbalised tails are cut to this many words (SLAKE descriptions run
            to 60+ words; a question encoder has a short token budget).
    """

    def __init__(self, triplets: Iterable[Sequence[str]], max_tail_words: int = 12):
        self.triplets: list[Triplet] = []
        for i, t in enumerate(triplets):
            if len(t) != 3 or not all(isinstance(x, str) for x in t):
                raise ValueError(f"triplet {i} is not (head, relation, tail) strings: {t!r}")
            self.triplets.append(Triplet(*(x.strip() for x in t)))
        self.max_tail_words = max_tail_words
        self._by_entity: dict[tuple[str, ...], list[int]] = {}
        self._names: dict[tuple[str, ...], str] = {}
        for i, t in enumerate(self.triplets):
            self._index(t.head, t.head, i)
        # An alias names the same entity: "heart muscle" finds the facts of its head.
        for t in self.triplets:
            if t.relation.lower() == "alias":
                for alias in t.tail.split(","):
                    for j in self._by_entity.get(tuple(normalise_text(t.head)), []):
                        self._index(alias, t.head, j)
        self.max_ngram = max((len(k) for k in self._by_entity), default=1)

    def _index(self, name: str, head: str, i: int) -> None:
        key = tuple(normalise_text(name))
        if not key or (len(key) == 1 and key[0] in _STOP):
            return
        ids = self._by_entity.setdefault(key, [])
        if i not in ids:
            ids.append(i)
        self._names.setdefault(key, head)

    @classmethod
    def from_slake(cls, root: str | Path, max_tail_words: int = 12) -> KnowledgeGraph:
        """The English SLAKE KG under `root` (the slake folder, or its KG/ folder)."""
        from medmm.data.datasets.slake import load_kg

        root = Path(root)
        if not root.exists():
            raise BadInputError(root, "SLAKE knowledge-graph folder not found (expected KG/en_*.csv under it)")
        return cls(load_kg(root), max_tail_words=max_tail_words)

    def __len__(self) -> int:
        return len(self.triplets)

    @property
    def entities(self) -> list[str]:
        """Distinct head entities, in file order."""
        return list(dict.fromkeys(t.head for t in self.triplets))

    def match_entities(self, text: str) -> list[str]:
        """KG entities named in `text`, left to right; longest n-gram wins, spans do not overlap."""
        words = normalise_text(text)
        found: list[str] = []
        i = 0
        while i < len(words):
            for n in range(min(self.max_ngram, len(words) - i), 0, -1):
                key = tuple(words[i : i + n])
                if key in self._by_entity:
                    name = self._names[key]
                    if name not in found:
                        found.append(name)
                    i += n
                    break
            else:
                i += 1
        return found

    def facts(self, entity: str) -> list[Triplet]:
        """All triplets of one entity (by name or alias), ranked by relation priority."""
        ids = self._by_entity.get(tuple(normalise_text(entity)), [])
        rank = {r: k for k, r in enumerate(RELATION_PRIORITY)}
        ordered = sorted(ids, key=lambda i: (rank.get(self.triplets[i].relation.lower(), len(rank)), i))
        return [self.triplets[i] for i in ordered]

    def retrieve(self, text: str, k: int = 3) -> list[Triplet]:
        """Top-k facts for `text`: round-robin over its matched entities so each gets a say."""
        per_entity = [self.facts(e) for e in self.match_entities(text)]
        out: list[Triplet] = []
        depth = 0
        while len(out) < k and any(depth < len(f) for f in per_entity):
            for f in per_entity:
                if depth < len(f) and len(out) < k and f[depth] not in out:
                    out.append(f[depth])
            depth += 1
        return out

    def verbalise(self, t: Triplet) -> str:
        """"head - relation - tail" in lower case, the tail cut to `max_tail_words` words."""
        tail = " ".join(t.tail.split()[: self.max_tail_words])
        return f"{t.head} - {t.relation} - {tail}".lower()

    def knowledge_text(self, text: str, k: int = 3, sep: str = "; ") -> str:
        """The verbalised top-k facts for `text` joined by `sep` ("" when nothing matches)."""
        return sep.join(self.verbalise(t) for t in self.retrieve(text, k))

    def to_list(self) -> list[list[str]]:
        """JSON-serialisable triplets (for saving beside a model)."""
        return [[t.head, t.relation, t.tail] for t in self.triplets]
