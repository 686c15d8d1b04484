"""Errors that several layers raise and the command line reports as one line (imports nothing of the
package, so any module may use them)."""

from __future__ import annotations


class TableMismatchError(ValueError):
    """A results table does not hold exactly the runs of the config whose report reads it."""


class FindingError(ValueError):
    """A finding cannot be published: its grid is unfinished, a run's files are gone, or the README has no
    place for its quote."""
