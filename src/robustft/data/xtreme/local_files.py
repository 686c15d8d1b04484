"""Local XTREME files under `<data_dir>/xtreme/<task>/`: which languages a task folder holds, a file's lines,
and the error for a file that XTREME ships without its labels."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from robustft.data.xtreme.spec import LANGUAGE_NAMES, TATOEBA_CODES, XtremeTask
from robustft.data.xtreme.tasks import get_xtreme_task
from robustft.errors import DataFormatError, LabelsWithheldError


def local_languages(task: str, split: str, data_dir: str | Path) -> list[str]:
    """The languages (2-letter codes, sorted) that have a local file of `split` under the task's folder."""
    spec = get_xtreme_task(task)
    found: set[str] = set()
    for template in spec.templates(split):
        folder = spec.local_dir(data_dir) / Path(template).parent
        if "{" not in template:  # one file for the corpus's only language (SQuAD's train-v1.1.json)
            if (folder / Path(template).name).exists():
                found.update(spec.languages)
            continue
        if not folder.is_dir():
            continue
        pattern = _template_pattern(Path(template).name)
        for entry in folder.iterdir():
            match = pattern.fullmatch(entry.name)
            language = _language_of(match) if match else None
            if language is not None:
                found.add(language)
    return sorted(found)


def _template_pattern(name: str) -> re.Pattern[str]:
    """A file-name template as a regex; a field used twice must repeat the same text."""
    groups = {"lang": "[a-z]{2,3}", "lang3": "[a-z]{3}", "name": "[a-z]+"}
    parts: list[str] = []
    seen: set[str] = set()
    for piece in re.split(r"(\{\w+\})", name):
        field_name = piece[1:-1] if piece.startswith("{") else None
        if field_name is None:
            parts.append(re.escape(piece))
        elif field_name in seen:
            parts.append(f"(?P={field_name})")
        else:
            seen.add(field_name)
            parts.append(f"(?P<{field_name}>{groups[field_name]})")
    return re.compile("".join(parts))


def _language_of(match: re.Match[str]) -> str | None:
    fields = match.groupdict()
    if "lang" in fields:
        return fields["lang"]
    if "lang3" in fields:
        return next((two for two, three in TATOEBA_CODES.items() if three == fields["lang3"]), None)
    return next((code for code, name in LANGUAGE_NAMES.items() if name.lower() == fields["name"]), None)


def file_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a UTF-8 file; a BOM is dropped."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for line_no, line in enumerate(handle, start=1):
            yield line_no, line.rstrip("\r\n")


def labels_withheld(spec: XtremeTask, path: Path, split: str, language: str, missing: str) -> DataFormatError:
    """The error for a file without labels: XTREME withholds them."""
    options = []
    if split != "dev" and "dev" in spec.local_files:
        options.append("evaluate on split 'dev' instead")
    hub = spec.hub_source(split, language)
    if hub is not None:
        options.append(f"move this file away so that the labelled {split} split is read from the Hub: {hub}")
    else:
        options.append("replace it with the original release's labelled file")
    if spec.key == "bucc2018":
        options = [
            f"restore {language}-en.{split}.gold from the BUCC 2018 release "
            f"(bucc2018-{language}-en.training-gold.tar.bz2 holds XTREME's test split, "
            "https://comparable.limsi.fr/bucc2018/)"
        ]
    advice = ", or ".join(options)
    return LabelsWithheldError(
        f"{path}: {missing}: XTREME withholds the {spec.paper_name} {split} labels. "
        f"{advice[0].upper()}{advice[1:]}."
    )
