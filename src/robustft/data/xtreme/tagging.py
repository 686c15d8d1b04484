"""Local UD-POS / PAN-X files: `token<TAB>TAG` lines, a blank line between sentences."""

from __future__ import annotations

from pathlib import Path

from robustft.data.xtreme.local_files import file_lines, labels_withheld
from robustft.data.xtreme.spec import XtremeTask
from robustft.data.xtreme.splits import TaggingSplit
from robustft.errors import DataFormatError


def read_tagged_tsv(spec: XtremeTask, path: Path, split: str, language: str) -> TaggingSplit:
    """A UD-POS / PAN-X file: `token<TAB>TAG` lines, a blank line between sentences."""
    assert spec.labels is not None
    prefix = f"{language}:"  # raw PAN-X writes every token as "<lang>:<token>"
    sentences: list[list[str]] = []
    sentence_tags: list[list[str]] = []
    tokens: list[str] = []
    tags: list[str] = []
    for line_no, line in file_lines(path):
        if not line.strip():
            if tokens:
                sentences.append(tokens)
                sentence_tags.append(tags)
                tokens, tags = [], []
            continue
        cells = line.split("\t")
        where = f"{path}:{line_no}"
        if len(cells) == 1 and not sentences and not tokens:
            raise labels_withheld(spec, path, split, language, "it has no tag column (tokens only)")
        if len(cells) != 2:
            raise DataFormatError(f"{where}: expected 'token<TAB>tag', found {len(cells)} field(s)")
        token, tag = cells[0], cells[1].strip()
        if token.startswith(prefix) and len(token) > len(prefix):
            token = token[len(prefix) :]
        if not token.strip():
            raise DataFormatError(f"{where}: empty token")
        if tag not in spec.labels:
            raise DataFormatError(f"{where}: tag {tag!r} is not one of {list(spec.labels)}")
        tokens.append(token)
        tags.append(tag)
    if tokens:
        sentences.append(tokens)
        sentence_tags.append(tags)
    if not sentences:
        raise DataFormatError(f"{path}: no sentences")
    return TaggingSplit(tokens=sentences, tags=sentence_tags, source=f"local:{path}")
