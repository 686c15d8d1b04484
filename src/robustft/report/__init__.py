"""The report stage: one module per track builds its report as data, and typst typesets the PDF.

`glue` is the GLUE/XTREME report (Table 2 and the paper artifacts), `instruct` the instruction-tuning
report, `curves` the learning-curve figures of the GLUE and XTREME tracks, and `typeset` the document
blocks, number formats and artifact sections both share. A report is a JSON document (title and blocks:
headings, paragraphs, tables of cells, figures); `templates/report.typ` reads it and lays it out for both.
The names below are re-exported so `from robustft.report import build_report` keeps working; the
instruction-tuning report is imported as `robustft.report.instruct`.
"""

from robustft.reference import GLUE_AVG
from robustft.report.glue import (
    ReportSpec,
    build_report,
    effect_rows,
    load_curves,
    load_tables,
    precision_choice,
    report_document,
)
from robustft.report.typeset import fmt_p, fmt_points, fmt_signed
from robustft.stats import (
    CONTRADICTED,
    DIRECTION_ONLY,
    NO_PAPER_VALUE,
    NOT_RUN,
    REPRODUCED,
    TOO_FEW_SEEDS,
    WITHIN_NOISE,
    magnitude,
    verdict,
)

__all__ = [
    "CONTRADICTED",
    "DIRECTION_ONLY",
    "GLUE_AVG",
    "NOT_RUN",
    "NO_PAPER_VALUE",
    "REPRODUCED",
    "TOO_FEW_SEEDS",
    "WITHIN_NOISE",
    "ReportSpec",
    "build_report",
    "effect_rows",
    "fmt_p",
    "fmt_points",
    "fmt_signed",
    "load_curves",
    "load_tables",
    "magnitude",
    "precision_choice",
    "report_document",
    "verdict",
]
