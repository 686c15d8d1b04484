"""The tables stage: one module per track turns finished run directories into the CSVs the reports cite.

`glue` writes runs.csv, summary.csv, comparisons.csv and curves.csv; `xtreme` writes xtreme.csv;
`instruct` writes instruct.csv. The GLUE names below are re-exported so `from robustft.tables import
compare` keeps working; the XTREME and instruction-tuning modules are imported by their own names.
"""

from robustft.tables.glue import (
    AVERAGE_SEPARATOR,
    COMPARISON_COLUMNS,
    SUMMARY_COLUMNS,
    average_tasks,
    collect_curves,
    collect_runs,
    compare,
    full_data_tasks,
    summarize,
    write_curves,
    write_tables,
)

__all__ = [
    "AVERAGE_SEPARATOR",
    "COMPARISON_COLUMNS",
    "SUMMARY_COLUMNS",
    "average_tasks",
    "collect_curves",
    "collect_runs",
    "compare",
    "full_data_tasks",
    "summarize",
    "write_curves",
    "write_tables",
]
