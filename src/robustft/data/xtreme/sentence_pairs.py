"""Local XNLI / PAWS-X files: labelled sentence pairs, in any TSV layout the package docstring lists."""

from __future__ import annotations

from pathlib import Path

from robustft.data.base import SplitData
from robustft.data.xtreme.local_files import file_lines, labels_withheld
from robustft.data.xtreme.spec import LABEL_ALIASES, XtremeTask
from robustft.errors import DataFormatError


def _unquote(cell: str) -> str:
    """Undo csv.writer's quoting (XTREME writes its TSVs with it): a quoted cell, inner quotes doubled."""
    if len(cell) >= 2 and cell[0] == cell[-1] == '"' and '"' not in cell[1:-1].replace('""', ""):
        return cell[1:-1].replace('""', '"')
    return cell


HEADER_ROLES = {
    "premise": 0,
    "sentence1": 0,
    "hypo": 1,
    "hypothesis": 1,
    "sentence2": 1,
    "label": 2,
    "gold_label": 2,
}
# Columns (sentence 1, sentence 2, label) of a headerless file, by its number of fields.
PAIR_LAYOUTS = {3: (0, 1, 2), 4: (1, 2, 3), 5: (2, 3, 4)}


def _pair_header(cells: list[str], where: str) -> tuple[int, int, int] | None:
    """The (sentence 1, sentence 2, label) columns of a header line; None when the line is data."""
    names = [cell.strip().lower() for cell in cells]
    if "label" not in names and "gold_label" not in names:
        return None
    roles: dict[int, int] = {}
    for index, name in enumerate(names):
        if name in HEADER_ROLES:
            roles.setdefault(HEADER_ROLES[name], index)
    if len(roles) < 3:
        raise DataFormatError(
            f"{where}: header {cells} lacks a sentence1/premise, sentence2/hypo or label column"
        )
    return roles[0], roles[1], roles[2]


def label_id(spec: XtremeTask, raw: str) -> int | None:
    name = raw.strip()
    name = LABEL_ALIASES.get(name, name)
    return spec.labels.index(name) if spec.labels and name in spec.labels else None


def read_pair_tsv(spec: XtremeTask, path: Path, split: str, language: str) -> SplitData:
    """An XNLI / PAWS-X file in any of the layouts of the module docstring."""
    rows = [(line_no, line.split("\t")) for line_no, line in file_lines(path) if line.strip()]
    if not rows:
        raise DataFormatError(f"{path}: file is empty")
    first_no, first = rows[0]
    columns = _pair_header(first, f"{path}:{first_no}")
    raw_text = columns is not None  # header files are raw text: no csv quoting to undo
    if columns is None:
        if len(first) == 2:
            raise labels_withheld(
                spec, path, split, language, "it has no label column (sentence1, sentence2 only)"
            )
        if len(first) not in PAIR_LAYOUTS:
            raise DataFormatError(
                f"{path}:{first_no}: expected 3 tab-separated fields (sentence1, sentence2, label), or 4 "
                f"(id first) or 5 (XTREME translate-train), found {len(first)}"
            )
        columns = PAIR_LAYOUTS[len(first)]
    else:
        rows = rows[1:]
    n_fields = len(first)
    # The bucket's PAWS-X translations have known bad rows; TFDS skips them, and so do we (counted).
    lenient = spec.key == "pawsx" and split == "translate-train" and n_fields == 5
    first_texts: list[str] = []
    second_texts: list[str] = []
    labels: list[int] = []
    skipped = 0
    for line_no, cells in rows:
        where = f"{path}:{line_no}"
        label = label_id(spec, cells[columns[2]]) if len(cells) == n_fields else None
        if label is None and lenient:
            skipped += 1
            continue
        if len(cells) != n_fields:
            raise DataFormatError(
                f"{where}: expected {n_fields} tab-separated fields (as line {first_no}), found {len(cells)}"
            )
        if label is None:
            choices = [*(spec.labels or ()), *LABEL_ALIASES]
            raise DataFormatError(f"{where}: label {cells[columns[2]]!r} is not one of {choices}")
        unquote = (lambda cell: cell) if raw_text else _unquote
        first_texts.append(unquote(cells[columns[0]]))
        second_texts.append(unquote(cells[columns[1]]))
        labels.append(label)
    if not labels:
        raise DataFormatError(f"{path}: no data rows")
    source = f"local:{path}"
    if skipped:
        source += f" ({skipped} rows with a wrong field count or label skipped, as TFDS does)"
    return SplitData(texts=[first_texts, second_texts], labels=labels, source=source)
