"""Local bitext retrieval files: BUCC 2018 (sentences with ids, gold id pairs) and Tatoeba (line-aligned)."""

from __future__ import annotations

from pathlib import Path

from robustft.data.xtreme.local_files import file_lines, labels_withheld
from robustft.data.xtreme.spec import XtremeTask, fill_template
from robustft.data.xtreme.splits import RetrievalSplit
from robustft.errors import DataFormatError


def _id_sentences(path: Path) -> tuple[list[str], list[str]]:
    """A BUCC sentence file: `<id><TAB><sentence>` per line."""
    ids: list[str] = []
    sentences: list[str] = []
    seen: set[str] = set()
    for line_no, line in file_lines(path):
        identifier, tab, sentence = line.partition("\t")
        if not tab or not identifier.strip():
            raise DataFormatError(f"{path}:{line_no}: expected '<id><TAB><sentence>'")
        if identifier in seen:
            raise DataFormatError(f"{path}:{line_no}: id {identifier!r} appears twice")
        seen.add(identifier)
        ids.append(identifier)
        sentences.append(sentence)
    if not ids:
        raise DataFormatError(f"{path}: file is empty")
    return ids, sentences


def read_bucc(spec: XtremeTask, path: Path, split: str, language: str) -> RetrievalSplit:
    """BUCC 2018 `<l>-en.<split>.{<l>,en,gold}` (path is the `.<l>` file)."""
    stem = f"{language}-en.{split}"
    target_path = path.with_name(f"{stem}.en")
    gold_path = path.with_name(f"{stem}.gold")
    if not target_path.exists():
        raise DataFormatError(f"{path}: its English side {target_path} is missing")
    if not gold_path.exists():
        raise labels_withheld(
            spec,
            path,
            split,
            language,
            f"its gold pairs {gold_path.name} are missing (XTREME's download deletes them)",
        )
    source_ids, source_sentences = _id_sentences(path)
    target_ids, target_sentences = _id_sentences(target_path)
    known_source, known_target = set(source_ids), set(target_ids)
    gold: list[tuple[str, str]] = []
    for line_no, line in file_lines(gold_path):
        cells = line.split("\t")
        where = f"{gold_path}:{line_no}"
        if len(cells) != 2:
            raise DataFormatError(
                f"{where}: expected '<{language} id><TAB><en id>', found {len(cells)} field(s)"
            )
        if cells[0] not in known_source:
            raise DataFormatError(f"{where}: {cells[0]!r} is not an id of {path.name}")
        if cells[1] not in known_target:
            raise DataFormatError(f"{where}: {cells[1]!r} is not an id of {target_path.name}")
        gold.append((cells[0], cells[1]))
    if not gold:
        raise DataFormatError(f"{gold_path}: file is empty")
    return RetrievalSplit(
        source_ids=source_ids,
        source_sentences=source_sentences,
        target_ids=target_ids,
        target_sentences=target_sentences,
        gold=gold,
        source=f"local:{path} + {target_path.name} + {gold_path.name}",
    )


def read_tatoeba(spec: XtremeTask, path: Path, split: str, language: str) -> RetrievalSplit:
    """LASER's `tatoeba.<l3>-eng.{<l3>,eng}`: line i of the two files is a gold pair."""
    if not path.name.startswith("tatoeba."):
        # utils_preprocess.tatoeba_preprocess sorts the English side, so the pairs are gone.
        raise labels_withheld(
            spec, path, split, language, "its English side is sorted, so the gold pairs are gone"
        )
    target_path = path.with_name(f"tatoeba.{fill_template('{lang3}', language)}-eng.eng")
    if not target_path.exists():
        raise DataFormatError(f"{path}: its English side {target_path} is missing")
    source_sentences = [line for _, line in file_lines(path)]
    target_sentences = [line for _, line in file_lines(target_path)]
    if len(source_sentences) != len(target_sentences):
        raise DataFormatError(
            f"{path} has {len(source_sentences)} lines but {target_path} has {len(target_sentences)}: "
            "Tatoeba's files must be line-aligned"
        )
    if not source_sentences:
        raise DataFormatError(f"{path}: file is empty")
    return RetrievalSplit.line_aligned(
        source_sentences, target_sentences, f"local:{path} + {target_path.name}"
    )
