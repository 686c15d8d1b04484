"""Every paper artifact's key and the table it is a function of, without importing the artifacts.

The artifacts' modules import pandas, scipy and matplotlib; the workflow needs only the keys (to check a
config's `artifacts`) and each one's table (to wire its rule), at parse time, which Snakemake repeats for
every cluster job. An artifact registered with `register_artifact` must be listed here with the same
`table` (tests/workflow/test_parse_imports.py checks the two agree).
"""

from __future__ import annotations

# key -> table: runs (the GLUE track's runs.csv), xtreme, instruct, or one of the instruction-tuning
# track's embedding measurements (embedding_flips, embedding_spectra: robustft.evals.embedding_analysis).
ARTIFACT_TABLES: dict[str, str] = {
    "crossmethod/table": "runs",
    "neftune/table1": "instruct",
    "neftune/figure2": "instruct",
    "neftune/table2": "instruct",
    "neftune/table6": "instruct",
    "neftune/table14": "instruct",
    "neftune/table3": "instruct",
    "neftune/figure3": "instruct",
    "neftune/figure4": "instruct",
    "neftune/figure5": "instruct",
    "neftune/loss_curves": "instruct",
    "neftune/table4": "instruct",
    "neftune/table5": "instruct",
    "neftune/table10": "instruct",
    "neftune/table11": "instruct",
    "neftune/table12": "instruct",
    "neftune/table13": "instruct",
    "neftune/figure6": "embedding_flips",
    "neftune/figure7": "embedding_spectra",
    "neftune/figure8": "embedding_flips",
    "noisytune/table2": "runs",
    "noisytune/figure2": "runs",
    "noisytune/figure3": "runs",
    "noisytune/figure4": "runs",
    "noisytune/figure6": "runs",
    "noisytune/figure5": "runs",
    "noisytune/table3": "xtreme",
    "smart/table1": "runs",
    "smart/table3": "runs",
    "smart/table4": "runs",
    "smart/table5": "runs",
    "smart/table6": "runs",
    "smart/figure2": "runs",
}

# The tables of the instruction-tuning track: their artifacts take the track's naming (instruct.report).
INSTRUCT_TABLES = ("instruct", "embedding_flips", "embedding_spectra")


def artifact_table(key: str) -> str:
    """The table artifact `key` is a function of; a KeyError names the known keys (as get_artifact's)."""
    try:
        return ARTIFACT_TABLES[key]
    except KeyError:
        raise KeyError(f"unknown artifact {key!r}; known: {sorted(ARTIFACT_TABLES)}") from None
