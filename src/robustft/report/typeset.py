"""The typesetting both reports share: the report document, number formats, the paper artifacts, the PDF.

A report is data, never markup. The GLUE/XTREME report (report/glue.py) and the instruction-tuning report
(report/instruct.py) build a *document*: a title and a list of blocks (headings, paragraphs, bullets,
tables of cells, figures, callouts), each a plain dict that JSON can hold. `write_pdf` writes it as JSON
into the typst root and compiles templates/report.typ, which reads that file with typst's `json()` and
lays it out. No text of a report is ever pasted into typst markup, so a name holding `#`, `$`, `*` or `@`
is printed as it is and nothing needs escaping.

In order: number formats, the blocks and cells of a document, verdict wording, the document and its
compilation, and the paper artifacts (loaded from their folders, each printed with its figure, claims and
appendix table).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import typst

from robustft.io import write_bytes_atomic, write_text_atomic
from robustft.reference import paper_task_name
from robustft.stats import MAGNITUDES, MIN_PAIRED_SEEDS, NOT_RUN, verdict_meanings

CI_LABEL = "95% CI"

# A block of the document: a dict whose "kind" names what it is, with the fields templates/report.typ
# reads (its head comment lists them). A cell of a table: a dict with "text" (or "verdict") and optional
# "sub" and "rowspan". Both are plain data so the document can be written as JSON.
Block = dict[str, Any]
Cell = dict[str, Any]
Artifact = tuple[Mapping[str, Any], pd.DataFrame, str | None]


# ---------------------------------------------------------------- numbers


def is_missing(value: float | None) -> bool:
    """None or NaN: a cell the tables leave empty, printed as "–"."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_points(value: float | None, decimals: int) -> str:
    if is_missing(value):
        return "–"
    # round() + 0.0 turns -0.0 into 0.0, so a tiny negative never prints as "−0.0".
    return f"{round(value, decimals) + 0.0:.{decimals}f}".replace("-", "−")


def fmt_signed(value: float | None, decimals: int) -> str:
    if is_missing(value):
        return "–"
    return f"{round(value, decimals) + 0.0:+.{decimals}f}".replace("-", "−")


def fmt_p(p: float | None) -> str:
    if is_missing(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:#.3g}"


# ---------------------------------------------------------------- blocks and cells


def heading(text: str, level: int = 1) -> Block:
    """A numbered heading: level 1 a section, level 2 a subsection."""
    return {"kind": "heading", "level": level, "text": text}


def paragraph(text: str, lead: str | None = None) -> Block:
    """A paragraph of plain text; `lead`, when given, is printed in bold before it (e.g. "Notes.")."""
    block: Block = {"kind": "paragraph", "text": text}
    if lead is not None:
        block["lead"] = lead
    return block


def bullets(items: Sequence[str]) -> Block:
    return {"kind": "bullets", "items": list(items)}


def callout(blocks: Sequence[Block]) -> Block:
    """`blocks` in a highlighted box: what a reader must not miss (proxies, degenerate runs)."""
    return {"kind": "callout", "blocks": list(blocks)}


def figure_block(path: str, caption: str, max_height_cm: float | None = None) -> Block:
    """An image addressed from the typst root ("/name.svg"), as wide as the text and at most
    `max_height_cm` tall (the template's default when None)."""
    block: Block = {"kind": "figure", "path": path, "caption": caption}
    if max_height_cm is not None:
        block["max_height_cm"] = max_height_cm
    return block


def pagebreak() -> Block:
    return {"kind": "pagebreak"}


def table_cell(text: str, sub: str | None = None, rowspan: int | None = None) -> Cell:
    """A table cell: `text`, and under it `sub` in the paper's grey; `rowspan` rows tall when given."""
    made: Cell = {"text": text}
    if sub is not None:
        made["sub"] = sub
    if rowspan is not None:
        made["rowspan"] = rowspan
    return made


def table_block(
    header: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    align: str | Sequence[str] = "left",
    group_starts: Sequence[int] = (),
    small: bool = False,
) -> Block:
    """A booktabs-style table; `align` is one of left/center/right for every column, or one per column.

    A thin rule is drawn above each row index in `group_starts` (e.g. where a new model begins); `small`
    sets it in the appendix's small type.
    """
    aligns = [align] * len(header) if isinstance(align, str) else list(align)
    if len(aligns) != len(header):
        raise ValueError(f"{len(aligns)} alignments for {len(header)} columns")
    block: Block = {
        "kind": "table",
        "header": list(header),
        "align": aligns,
        "rows": [list(row) for row in rows],
        "group_starts": sorted({int(i) for i in group_starts if i > 0}),
    }
    if small:
        block["small"] = True
    return block


def text_list_section(title: str, items: Sequence[str]) -> list[Block]:
    return [heading(title), bullets(items) if items else paragraph("None recorded.")]


# ---------------------------------------------------------------- verdicts


def verdict_glossary(min_seeds: int = MIN_PAIRED_SEEDS, words: Sequence[str] | None = None) -> str:
    """The verdicts (all, or `words`) and their meanings in one sentence each, from stats.VERDICTS with
    this report's seed floor written in."""
    meanings = verdict_meanings(min_seeds)
    shown = [word for word in meanings if words is None or word in words]
    return "; ".join(f"{word} = {meanings[word]}" for word in shown) + "."


def magnitude_glossary() -> str:
    return "; ".join(f"{word} = {meaning}" for word, meaning in MAGNITUDES.items()) + "."


def verdict_cell(word: str, size: str | None) -> Cell:
    """The verdict in its colour, with the magnitude (paper Δ against our CI) in grey under it."""
    made: Cell = {"verdict": word}
    if isinstance(size, str) and size:
        made["sub"] = size
    return made


def verdict_note(word: str, text: str) -> Block:
    """A line that starts with a verdict word in its colour: "not run: <reason>"."""
    return {"kind": "verdict_note", "verdict": word, "text": text}


def diverged_text(method_count: float, baseline_count: float) -> str | None:
    """ "k / m diverged" (method / baseline runs) under the pair count, or None when none diverged: a
    diverged seed is left out of the pairing, and this says so beside the Δ it would have changed."""
    counts = [0 if is_missing(c) else int(c) for c in (method_count, baseline_count)]
    if is_missing(method_count) and is_missing(baseline_count):
        return None
    return f"{counts[0]} / {counts[1]} diverged" if any(counts) else None


# ---------------------------------------------------------------- the document


def document(title: str, blocks: Sequence[Block]) -> dict[str, Any]:
    """A report as data: its title and its blocks in reading order."""
    return {"title": title, "blocks": list(blocks)}


def _template_source() -> bytes:
    """templates/report.typ, the layout of every report."""
    return resources.files("robustft").joinpath("report", "templates", "report.typ").read_bytes()


def write_pdf(report: Mapping[str, Any], root: Path, out_pdf: Path) -> None:
    """Typeset the document `report` into the PDF `out_pdf`. The document is written as JSON into the
    typst root `root` (the figures directory, from which images are addressed), as `<out_pdf stem>.json`,
    where templates/report.typ reads it."""
    root = Path(root).resolve()
    data = root / f"{Path(out_pdf).stem}.json"
    # allow_nan=False: a NaN that escaped the formatting is an error here, not "NaN" in the PDF.
    write_text_atomic(data, json.dumps(report, ensure_ascii=False, indent=1, allow_nan=False) + "\n")
    # No system fonts, no date: the same inputs give the same bytes on any machine.
    pdf = typst.compile(
        _template_source(),
        root=str(root),
        sys_inputs={"data": "/" + data.name},
        ignore_system_fonts=True,
        timestamp=0,
    )
    write_bytes_atomic(out_pdf, pdf)  # a killed job never leaves a truncated report


# ---------------------------------------------------------------- paper artifacts


def load_artifacts(artifact_dirs: Sequence[Path], figures_dir: Path) -> list[Artifact]:
    """Each artifact's result and claims; its figure is copied into the typst root under a unique name."""
    from robustft.artifacts.base import read_appendix, read_result

    loaded: list[Artifact] = []
    for directory in artifact_dirs:
        record, claims = read_result(Path(directory))
        # The appendix rides in the record, so the (record, claims, figure) triple stays as it is.
        record["appendix_table"] = read_appendix(Path(directory), record)
        figure_path = None
        if record.get("figure"):
            name = record["key"].replace("/", "_") + ".svg"
            write_bytes_atomic(figures_dir / name, (Path(directory) / record["figure"]).read_bytes())
            figure_path = "/" + name
        loaded.append((record, claims, figure_path))
    return loaded


def _claim_row(r: Any) -> list[Cell]:
    """One claim of an artifact: ours beside the paper's, Δ with its CI, the test, the verdict."""
    effect = "–"
    if not is_missing(r.delta):
        effect = f"{fmt_signed(r.delta, 2)} [{fmt_signed(r.ci_low, 2)}, {fmt_signed(r.ci_high, 2)}]"
    paper = fmt_points(None if is_missing(r.paper_value) else r.paper_value, 2)
    paper_model = r.paper_model if r.paper_model != r.model and isinstance(r.paper_model, str) else None
    diverged = diverged_text(
        getattr(r, "n_diverged_method", math.nan), getattr(r, "n_diverged_baseline", math.nan)
    )
    return [
        table_cell(r.model, paper_model),
        table_cell(paper_task_name(r.task)),
        table_cell(f"{r.method} − {r.baseline}"),
        table_cell(str(int(r.n_pairs)), diverged),
        table_cell(f"{fmt_points(r.mean_method, 2)} vs {fmt_points(r.mean_baseline, 2)}", paper),
        table_cell(effect),
        table_cell(f"{fmt_p(r.p_value)} ({r.p_kind})"),
        table_cell(fmt_signed(None if is_missing(r.paper_delta) else r.paper_delta, 2)),
        verdict_cell(r.verdict, getattr(r, "magnitude", None)),
    ]


def _artifact_section(
    record: Mapping[str, Any], claims: pd.DataFrame, figure_path: str | None
) -> list[Block]:
    """One paper artifact: its figure, its claims (ours beside the paper's, CI, test, verdict), notes."""
    blocks = [heading(f"{record['paper']} {record['artifact']}: {record['title']}", level=2)]
    if record["status"] != "regenerated":
        return [*blocks, verdict_note(NOT_RUN, record["reason"])]
    if figure_path is not None:
        blocks.append(figure_block(figure_path, record["caption"], max_height_cm=9))
    if not claims.empty:
        header = ["Model", "Task", "Claim", "Pairs", "Ours vs base (paper)", f"Δ [{CI_LABEL}]", "p"]
        header += ["Paper Δ", "Verdict"]
        blocks.append(table_block(header, [_claim_row(r) for r in claims.itertuples(index=False)]))
    for title, items in (("Choices", record.get("choices") or []), ("Notes", record.get("notes") or [])):
        if items:
            blocks += [paragraph("", lead=f"{title}."), bullets(items)]
    return blocks


def artifacts_part(artifacts: Sequence[Artifact]) -> list[Block]:
    """The part "Paper artifacts": what they cover, the verdict words they use, then one section each."""
    if not artifacts:
        return []
    counts = pd.Series([record["status"] for record, _, _ in artifacts]).value_counts()
    used = {str(v) for _, claims, _ in artifacts if "verdict" in claims for v in claims["verdict"].dropna()}
    floors = {int(record["min_seeds"]) for record, _, _ in artifacts if record.get("min_seeds")}
    summary = ", ".join(f"{count} {status}" for status, count in counts.items())
    intro = (
        f"Every table and figure of the paper that this config covers ({summary}). A claim is the paper's "
        "effect of a method against its baseline. Verdicts used below: "
        + verdict_glossary(min(floors, default=MIN_PAIRED_SEEDS), words=used)
        + " Magnitude (grey, under the verdict): "
        + magnitude_glossary()
    )
    blocks = [heading("Paper artifacts"), paragraph(intro)]
    for artifact in artifacts:
        blocks += _artifact_section(*artifact)
    return blocks


def _appendix_cell(value: Any) -> Cell:
    if isinstance(value, float):
        return table_cell(fmt_points(value, 2))
    return table_cell(str(value))


def appendix_part(artifacts: Sequence[Artifact]) -> list[Block]:
    """The artifacts' long tables (e.g. per-language scores), each from a new page, in small type; a
    table longer than a page continues on the next with its header repeated."""
    parts: list[list[Block]] = []
    for record, _, _ in artifacts:
        frame = record.get("appendix_table")
        if frame is None or frame.empty:
            continue
        title = record.get("appendix_title") or f"{record['paper']} {record['artifact']}"
        # A thin rule where the row's group changes: its text columns bar the last (e.g. all but language).
        text_columns = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        group = frame[text_columns[:-1]].astype(str).agg("|".join, axis=1) if len(text_columns) > 1 else None
        starts = (
            [] if group is None else [i for i in range(1, len(frame)) if group.iloc[i] != group.iloc[i - 1]]
        )
        rows = [[_appendix_cell(v) for v in row] for row in frame.itertuples(index=False)]
        align = ["left" if c in text_columns else "right" for c in frame.columns]
        header = [str(c) for c in frame.columns]
        parts.append([heading(title, level=2), table_block(header, rows, align, starts, small=True)])
    if not parts:
        return []
    blocks = [pagebreak(), heading("Appendix")]
    for i, part in enumerate(parts):
        blocks += ([pagebreak()] if i else []) + part
    return blocks


def refuse_unknown_keys(raw: Mapping[str, Any], spec_class: type, what: str) -> None:
    """A report spec built from plain data (YAML/JSON) refuses keys its dataclass lacks, so a typo cannot
    pass silently."""
    known = {f.name for f in fields(spec_class)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; known keys: {sorted(known)}")
