"""The typesetting both reports share: typst markup, number formats, the paper artifacts' part, the PDF.

The GLUE/XTREME report (report/glue.py) and the instruction-tuning report (report/instruct.py) build typst
source from these pieces and compile it with `write_pdf`. Everything here turns values into text or
markup; nothing computes a statistic. In order: number formats, typst markup (strings, cells, tables,
bullets, sections), verdict wording, the document's head and its compilation, and the paper artifacts
(loaded from their folders, each printed with its figure, claims and appendix table).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import typst

from robustft.io import write_bytes_atomic
from robustft.reference import paper_task_name
from robustft.stats import MAGNITUDES, MIN_PAIRED_SEEDS, NOT_RUN, verdict_meanings

CI_LABEL = "95% CI"


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


# ---------------------------------------------------------------- typst markup


def typst_string(text: str) -> str:
    """`text` as a typst string literal: shown verbatim, whatever markup characters it holds."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return '"' + "".join(c if c.isprintable() else f"\\u{{{ord(c):x}}}" for c in escaped) + '"'


def plain_text(text: str) -> str:
    """Plain text inside markup; the trailing ';' ends the expression so following '.' is text."""
    return f"#{typst_string(text)};"


def table_cell(main: str, sub: str | None = None) -> str:
    """A table cell: `main`, and under it `sub` in the paper's grey."""
    if sub is None:
        return f"[{plain_text(main)}]"
    return f"[{plain_text(main)} \\ #paper-num({typst_string(sub)})]"


def booktabs_table(
    columns: int,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    align: str,
    group_starts: Sequence[int] = (),
) -> str:
    """A booktabs-style table; `header` entries are plain strings, `rows` entries typst cells.

    A thin rule is drawn above each row index in `group_starts` (e.g. where a new model begins).
    """
    head = ", ".join(f"strong({typst_string(h)})" for h in header)
    lines = []
    for i, row in enumerate(rows):
        if i in group_starts and i > 0:
            lines.append("table.hline(stroke: 0.3pt + luma(170))")
        lines.append(", ".join(row))
    body = ",\n  ".join(lines)
    return (
        f"#table(\n  columns: {columns}, align: {align},\n  table.hline(),\n  table.header({head}),\n"
        f"  table.hline(stroke: 0.5pt),\n  {body},\n  table.hline(),\n)\n"
    )


def bullet_list(items: Sequence[str]) -> str:
    return "".join(f"- {plain_text(item)}\n" for item in items)


def text_list_section(title: str, items: Sequence[str]) -> str:
    return f"= {title}\n" + (bullet_list(items) if items else plain_text("None recorded.") + "\n")


# ---------------------------------------------------------------- verdicts


def verdict_glossary(min_seeds: int = MIN_PAIRED_SEEDS, words: Sequence[str] | None = None) -> str:
    """The verdicts (all, or `words`) and their meanings in one sentence each, from stats.VERDICTS with
    this report's seed floor written in."""
    meanings = verdict_meanings(min_seeds)
    shown = [word for word in meanings if words is None or word in words]
    return "; ".join(f"{word} = {meanings[word]}" for word in shown) + "."


def magnitude_glossary() -> str:
    return "; ".join(f"{word} = {meaning}" for word, meaning in MAGNITUDES.items()) + "."


def verdict_cell(word: str, size: str | None) -> str:
    """The verdict in its colour, with the magnitude (paper Δ against our CI) in grey under it."""
    if not isinstance(size, str) or not size:
        return f"verdict({typst_string(word)})"
    return f"[#verdict({typst_string(word)}) \\ #paper-num({typst_string(size)})]"


def diverged_text(method_count: float, baseline_count: float) -> str | None:
    """ "k / m diverged" (method / baseline runs) under the pair count, or None when none diverged: a
    diverged seed is left out of the pairing, and this says so beside the Δ it would have changed."""
    counts = [0 if is_missing(c) else int(c) for c in (method_count, baseline_count)]
    if is_missing(method_count) and is_missing(baseline_count):
        return None
    return f"{counts[0]} / {counts[1]} diverged" if any(counts) else None


# ---------------------------------------------------------------- the document


def document_head(title: str) -> str:
    """The page style of every report (templates/report.typ), then the document's title."""
    template = resources.files("robustft").joinpath("report", "templates", "report.typ").read_text("utf-8")
    return "\n".join(
        [
            template,
            f"#set document(title: {typst_string(title)}, date: none)",
            f'#align(center, text(size: 16pt, weight: "bold", {typst_string(title)}))\n',
        ]
    )


def write_pdf(source: str, root: Path, out_pdf: Path) -> None:
    """Typeset `source` into the PDF `out_pdf`; images are addressed from `root` (the figures directory)."""
    # No system fonts, no date: the same inputs give the same bytes on any machine.
    pdf = typst.compile(
        source.encode("utf-8"), root=str(Path(root).resolve()), ignore_system_fonts=True, timestamp=0
    )
    write_bytes_atomic(out_pdf, pdf)  # a killed job never leaves a truncated report


# ---------------------------------------------------------------- paper artifacts


def load_artifacts(
    artifact_dirs: Sequence[Path], figures_dir: Path
) -> list[tuple[dict[str, Any], pd.DataFrame, str | None]]:
    """Each artifact's result and claims; its figure is copied into the typst root under a unique name."""
    from robustft.artifacts.base import read_appendix, read_result

    loaded = []
    for directory in artifact_dirs:
        record, claims = read_result(Path(directory))
        # The appendix rides in the record, so the (record, claims, figure) triple stays as it is.
        record["appendix_table"] = read_appendix(Path(directory), record)
        figure = None
        if record.get("figure"):
            name = record["key"].replace("/", "_") + ".svg"
            write_bytes_atomic(figures_dir / name, (Path(directory) / record["figure"]).read_bytes())
            figure = "/" + name
        loaded.append((record, claims, figure))
    return loaded


def _artifact_section(record: Mapping[str, Any], claims: pd.DataFrame, figure: str | None) -> str:
    """One paper artifact: its figure, its claims (ours beside the paper's, CI, test, verdict), notes."""
    parts = [f"== {plain_text(record['paper'] + ' ' + record['artifact'] + ': ' + record['title'])}\n"]
    if record["status"] != "regenerated":
        parts.append(f"#verdict({typst_string(NOT_RUN)}): {plain_text(record['reason'])}\n")
        return "".join(parts)
    if figure is not None:
        image = f"fitted-image({typst_string(figure)}, max-height: 9cm)"
        parts.append(f"#figure({image}, caption: [{plain_text(record['caption'])}])\n")
    if not claims.empty:
        cells = []
        for r in claims.itertuples(index=False):
            effect = "–"
            if not is_missing(r.delta):
                effect = f"{fmt_signed(r.delta, 2)} [{fmt_signed(r.ci_low, 2)}, {fmt_signed(r.ci_high, 2)}]"
            paper = fmt_points(None if is_missing(r.paper_value) else r.paper_value, 2)
            cells.append(
                [
                    table_cell(
                        r.model,
                        r.paper_model
                        if r.paper_model != r.model and isinstance(r.paper_model, str)
                        else None,
                    ),
                    table_cell(paper_task_name(r.task)),
                    table_cell(f"{r.method} − {r.baseline}"),
                    table_cell(
                        str(int(r.n_pairs)),
                        diverged_text(
                            getattr(r, "n_diverged_method", math.nan),
                            getattr(r, "n_diverged_baseline", math.nan),
                        ),
                    ),
                    table_cell(f"{fmt_points(r.mean_method, 2)} vs {fmt_points(r.mean_baseline, 2)}", paper),
                    table_cell(effect),
                    table_cell(f"{fmt_p(r.p_value)} ({r.p_kind})"),
                    table_cell(fmt_signed(None if is_missing(r.paper_delta) else r.paper_delta, 2)),
                    verdict_cell(r.verdict, getattr(r, "magnitude", None)),
                ]
            )
        header = [
            "Model",
            "Task",
            "Claim",
            "Pairs",
            "Ours vs base (paper)",
            f"Δ [{CI_LABEL}]",
            "p",
            "Paper Δ",
        ]
        header.append("Verdict")
        parts.append(booktabs_table(len(header), header, cells, "left"))
    for title, items in (("Choices", record.get("choices") or []), ("Notes", record.get("notes") or [])):
        if items:
            parts.append(f"*{title}.*\n" + bullet_list(items))
    return "".join(parts)


def artifacts_part(artifacts: Sequence[tuple[Mapping[str, Any], pd.DataFrame, str | None]]) -> str:
    """The part "Paper artifacts": what they cover, the verdict words they use, then one section each."""
    if not artifacts:
        return ""
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
    return (
        "= Paper artifacts\n"
        + plain_text(intro)
        + "\n\n"
        + "\n".join(_artifact_section(*a) for a in artifacts)
    )


def _appendix_cell(value: Any) -> str:
    if isinstance(value, float):
        return table_cell(fmt_points(value, 2))
    return table_cell(str(value))


def appendix_part(artifacts: Sequence[tuple[Mapping[str, Any], pd.DataFrame, str | None]]) -> str:
    """The artifacts' long tables (e.g. per-language scores), each from a new page, in small type; a
    table longer than a page continues on the next with its header repeated."""
    parts = []
    for record, _, _ in artifacts:
        table = record.get("appendix_table")
        if table is None or table.empty:
            continue
        title = record.get("appendix_title") or f"{record['paper']} {record['artifact']}"
        # A thin rule where the row's group changes: its text columns bar the last (e.g. all but language).
        text_columns = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
        group = table[text_columns[:-1]].astype(str).agg("|".join, axis=1) if len(text_columns) > 1 else None
        starts = (
            [] if group is None else [i for i in range(1, len(table)) if group.iloc[i] != group.iloc[i - 1]]
        )
        rows = [[_appendix_cell(v) for v in row] for row in table.itertuples(index=False)]
        align = "(" + ", ".join("right" if c not in text_columns else "left" for c in table.columns) + ")"
        parts.append(
            f"== {plain_text(title)}\n"
            # Scoped: the template's `show table` rule would otherwise set the usual 8.5pt.
            + "#[\n#show table: set text(size: 7pt)\n#set table(inset: (x: 3pt, y: 1.5pt))\n"
            + booktabs_table(len(table.columns), list(table.columns), rows, align, starts)
            + "]\n"
        )
    return "#pagebreak()\n= Appendix\n" + "#pagebreak()\n".join(parts) if parts else ""


def refuse_unknown_keys(raw: Mapping[str, Any], spec_class: type, what: str) -> None:
    """A report spec built from plain data (YAML/JSON) refuses keys its dataclass lacks, so a typo cannot
    pass silently."""
    known = {f.name for f in fields(spec_class)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; known keys: {sorted(known)}")
