"""Question answering: SQuAD v1.1-format files (SQuAD, XQuAD, MLQA, TyDiQA-GoldP, their translations), and
the answer checks that local files and Hub rows both go through."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robustft.data.xtreme.local_files import labels_withheld
from robustft.data.xtreme.spec import XtremeTask
from robustft.data.xtreme.splits import QAExample, QASplit
from robustft.errors import DataFormatError

# One question as the QA readers see it: (where, id, question, context, answer texts, answer starts).
QARow = tuple[str, str, str, str, list[str], list[Any]]


def _answer_problem(context: str, texts: list[str], starts: list[Any]) -> str | None:
    """Why a question's answers are unusable, or None."""
    if not texts:
        return "no answers"
    if len(texts) != len(starts):
        return f"{len(texts)} answer texts but {len(starts)} answer_start values"
    for text, start in zip(texts, starts, strict=True):
        if not text:
            return "an answer text is empty"
        if not isinstance(start, int) or isinstance(start, bool):
            return f"answer_start {start!r} is not an integer"
        if context[start : start + len(text)] != text:
            return (
                f"answer {text!r} is not at answer_start {start} "
                f"(the context there reads {context[start : start + len(text)]!r})"
            )
    return None


def qa_split(rows: list[QARow], source: str, strict: bool) -> QASplit:
    """Questions whose answers check out; a bad one stops (strict) or is dropped and counted."""
    examples: list[QAExample] = []
    dropped = 0
    for where, qid, question, context, texts, starts in rows:
        problem = _answer_problem(context, texts, starts)
        if problem is not None:
            if strict:
                raise DataFormatError(f"{where}: {problem}")
            dropped += 1
            continue
        examples.append(
            QAExample(id=qid, question=question, context=context, answers=texts, answer_starts=starts)
        )
    if not examples:
        raise DataFormatError(f"{source}: no usable questions")
    if dropped:
        source += f" ({dropped} questions whose answer_start does not point at the answer text dropped)"
    return QASplit(examples=examples, source=source)


def _field(record: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise DataFormatError(f"{where}: no {key!r} key")
    value = record[key]
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataFormatError(f"{where}: {key!r} is a {type(value).__name__}, expected {kind.__name__}")
    return value


def _squad_rows(path: Path) -> list[QARow]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    rows: list[QARow] = []
    for a, article in enumerate(_field(data, "data", list, str(path))):
        for p, paragraph in enumerate(_field(article, "paragraphs", list, f"{path}: data[{a}]")):
            here = f"{path}: data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", str, here)
            for q, qa in enumerate(_field(paragraph, "qas", list, here)):
                where = f"{here}.qas[{q}]"
                qid = qa.get("id") if isinstance(qa, dict) else None
                if not isinstance(qid, str | int) or isinstance(qid, bool):
                    raise DataFormatError(f"{where}: no string 'id'")
                where = f"{where} (id {qid})"
                question = _field(qa, "question", str, where)
                texts: list[str] = []
                starts: list[Any] = []
                for answer in _field(qa, "answers", list, where):
                    texts.append(_field(answer, "text", str, where))
                    starts.append(_field(answer, "answer_start", int, where))
                rows.append((where, str(qid), question, context, texts, starts))
    return rows


def read_squad_json(spec: XtremeTask, path: Path, split: str, language: str) -> QASplit:
    """A SQuAD v1.1-format file (SQuAD, XQuAD, MLQA, TyDiQA-GoldP, their translations)."""
    rows = _squad_rows(path)
    if rows and all(all(text == "" for text in row[4]) for row in rows):
        # XTREME's remove_qa_test_annotations leaves one {"answer_start": 0, "text": ""} per question.
        raise labels_withheld(spec, path, split, language, "every answer is blank")
    # Gold splits must be exact; machine-translated training answers are often misaligned.
    return qa_split(rows, f"local:{path}", strict=split in ("dev", "test"))
