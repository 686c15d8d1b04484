"""Learning curves over seeds: the mean and standard deviation, per logged step, of what the runs logged.

Both tracks' curve tables (curves.csv from tables.glue, xtreme_curves.csv from tables.xtreme) hold one row
per logged point of each run; `seed_bands` turns the runs of one line (a model x task x method) into that
line and its band. Nothing is smoothed: a point of the band is the values the runs logged at that step.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

BAND_COLUMNS = ["mean", "std", "n"]


def seed_bands(curves: pd.DataFrame, x: str, y: str, by: Sequence[str] = ("method",)) -> pd.DataFrame:
    """Per group of `by` and value of `x` (a step or an epoch): the mean of `y` over the seeds that logged
    it, their standard deviation (ddof=1, as in summary.csv; NaN for a single seed) and their number.

    A seed that logged `y` twice at one `x` (a resumed run that repeated a step) counts once, with the
    mean of its values, so every seed weighs the same. Rows without `x` or `y` are not points of the
    curve. Columns: *by, x, mean, std, n; sorted by group, then x.
    """
    keys = [*by, x]
    logged = curves.dropna(subset=[x, y])
    if logged.empty:
        return pd.DataFrame(columns=[*keys, *BAND_COLUMNS])
    per_seed = logged.groupby([*keys, "seed"], sort=False)[y].mean().reset_index()
    bands = per_seed.groupby(keys)[y].agg(mean="mean", std=lambda values: values.std(ddof=1), n="count")
    return bands.reset_index().sort_values(keys, ignore_index=True)
