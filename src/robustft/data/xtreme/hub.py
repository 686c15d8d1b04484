"""Reading an XTREME split from the Hub: the datasets each task's `hub_id` / `hub_config` / `hub_splits` name,
checked as strictly as the local files."""

from __future__ import annotations

from typing import Any

from robustft.data.base import SplitData
from robustft.data.xtreme.qa import QARow, qa_split
from robustft.data.xtreme.sentence_pairs import label_id
from robustft.data.xtreme.spec import XtremeTask, fill_template
from robustft.data.xtreme.splits import QASplit, RetrievalSplit, TaggingSplit, XtremeData
from robustft.errors import DataFormatError


def read_hub(spec: XtremeTask, split: str, language: str, cache_dir: str | None) -> XtremeData:
    if split not in spec.hub_splits:
        raise LookupError(f"no Hub dataset holds {spec.paper_name} {split}")
    import datasets  # heavy import, only when the Hub is actually used

    config = fill_template(spec.hub_config, language)
    hub_split = spec.hub_splits[split]
    dataset = datasets.load_dataset(spec.hub_id, config, split=hub_split, cache_dir=cache_dir)
    where = f"hub:{spec.hub_id}/{config}:{hub_split}"
    if spec.kind == "classification":
        return _hub_pairs(spec, dataset, where, split, language)
    if spec.kind == "tagging":
        return _hub_tagging(spec, dataset, where)
    if spec.kind == "qa":
        return _hub_qa(spec, dataset, where, split, language)
    return _hub_tatoeba(dataset, where)


def _columns(dataset: Any, names: tuple[str, ...], where: str) -> list[list[Any]]:
    missing = [name for name in names if name not in dataset.column_names]
    if missing:
        raise DataFormatError(f"{where}: no column(s) {missing}; it has {dataset.column_names}")
    return [list(dataset[name]) for name in names]


def _hub_pairs(spec: XtremeTask, dataset: Any, where: str, split: str, language: str) -> SplitData:
    assert spec.labels is not None
    first, second, raw_labels = _columns(dataset, spec.hub_columns, where)
    labels: list[int] = []
    for row, raw in enumerate(raw_labels):
        label = label_id(spec, raw) if isinstance(raw, str) else raw if isinstance(raw, int) else None
        if label is None or not 0 <= label < len(spec.labels):
            raise DataFormatError(f"{where} row {row}: label {raw!r} is not one of {list(spec.labels)}")
        labels.append(label)
    if split == "translate-train" or (split == "train" and language != "en"):
        where += " (the dataset authors' machine translation, not XTREME's translate-train data)"
    return SplitData(texts=[list(map(str, first)), list(map(str, second))], labels=labels, source=where)


def _hub_tagging(spec: XtremeTask, dataset: Any, where: str) -> TaggingSplit:
    assert spec.labels is not None
    tag_column = spec.hub_columns[1]
    tokens, raw_tags = _columns(dataset, spec.hub_columns, where)
    # Integer tags are ClassLabel ids: their names come from the dataset's own features when it has them.
    inner = getattr(dataset.features.get(tag_column), "feature", None)
    names = list(getattr(inner, "names", None) or spec.labels)
    tags: list[list[str]] = []
    for row, (sentence, sentence_tags) in enumerate(zip(tokens, raw_tags, strict=True)):
        if any(isinstance(t, int) and not 0 <= t < len(names) for t in sentence_tags):
            raise DataFormatError(
                f"{where} row {row}: tag ids {sentence_tags} are not all in 0..{len(names) - 1}"
            )
        named = [names[t] if isinstance(t, int) else str(t) for t in sentence_tags]
        if len(named) != len(sentence):
            raise DataFormatError(f"{where} row {row}: {len(sentence)} tokens but {len(named)} tags")
        unknown = [tag for tag in named if tag not in spec.labels]
        if unknown:
            raise DataFormatError(f"{where} row {row}: tag(s) {unknown} not in {list(spec.labels)}")
        tags.append(named)
    return TaggingSplit(tokens=[list(map(str, s)) for s in tokens], tags=tags, source=where)


def _hub_qa(spec: XtremeTask, dataset: Any, where: str, split: str, language: str) -> QASplit:
    ids, questions, contexts, answers = _columns(dataset, ("id", "question", "context", "answers"), where)
    # google/xtreme's tydiqa config holds every language; the id's prefix names it ("finnish-...").
    prefix = f"{fill_template('{name}', language)}-" if spec.key == "tydiqa" else ""
    rows: list[QARow] = []
    for row, (qid, question, context, answer) in enumerate(
        zip(ids, questions, contexts, answers, strict=True)
    ):
        if not str(qid).startswith(prefix):
            continue
        if not isinstance(answer, dict) or not {"text", "answer_start"} <= answer.keys():
            raise DataFormatError(f"{where} row {row}: answers {answer!r} lack 'text' / 'answer_start'")
        rows.append(
            (
                f"{where} row {row} (id {qid})",
                str(qid),
                question,
                context,
                list(answer["text"]),
                list(answer["answer_start"]),
            )
        )
    if not rows:
        raise LookupError(f"{where} has no questions in language {language!r}")
    return qa_split(rows, where, strict=split in ("dev", "test"))


def _hub_tatoeba(dataset: Any, where: str) -> RetrievalSplit:
    sources, targets = _columns(dataset, ("source_sentence", "target_sentence"), where)
    return RetrievalSplit.line_aligned(
        [str(s).rstrip("\r\n") for s in sources], [str(t).rstrip("\r\n") for t in targets], where
    )
