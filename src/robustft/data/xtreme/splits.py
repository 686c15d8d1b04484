"""The split types of the XTREME tasks that are not sentence classification (that one is a SplitData), and
joining several splits of one kind into one (English + translate-train)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from robustft.data.base import SplitData


@dataclass
class TaggingSplit:
    tokens: list[list[str]]
    tags: list[list[str]]
    source: str

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[str]
    answer_starts: list[int]


@dataclass
class QASplit:
    examples: list[QAExample]
    source: str

    def __len__(self) -> int:
        return len(self.examples)


@dataclass
class RetrievalSplit:
    source_ids: list[str]  # the non-English side
    source_sentences: list[str]
    target_ids: list[str]  # English
    target_sentences: list[str]
    gold: list[tuple[str, str]]  # (source_id, target_id)
    source: str

    def __len__(self) -> int:
        return len(self.gold)

    @classmethod
    def line_aligned(
        cls, source_sentences: list[str], target_sentences: list[str], source: str
    ) -> RetrievalSplit:
        """Sentence i of one side pairs with sentence i of the other (Tatoeba); ids are line numbers."""
        ids = [str(i) for i in range(len(source_sentences))]
        return cls(
            source_ids=ids,
            source_sentences=source_sentences,
            target_ids=list(ids),
            target_sentences=target_sentences,
            gold=list(zip(ids, ids, strict=True)),
            source=source,
        )


XtremeData = SplitData | TaggingSplit | QASplit | RetrievalSplit


def concat_splits(parts: list[Any]) -> Any:
    """Several splits of one kind as one, in order."""
    first = parts[0]
    if len(parts) == 1:
        return first
    source = " + ".join(part.source for part in parts)
    if isinstance(first, SplitData):
        columns = range(len(first.texts))
        return SplitData(
            texts=[[text for part in parts for text in part.texts[i]] for i in columns],
            labels=[label for part in parts for label in part.labels],
            source=source,
        )
    if isinstance(first, TaggingSplit):
        return TaggingSplit(
            tokens=[s for part in parts for s in part.tokens],
            tags=[t for part in parts for t in part.tags],
            source=source,
        )
    return QASplit(examples=[e for part in parts for e in part.examples], source=source)
