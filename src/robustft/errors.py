"""Every error the package raises in one module and catches or reports in another; the command line
reports each as one line. Imports nothing of the package, so any module, at any layer, may use them
without importing the module that raises them (and its torch, pandas or transformers).

The classes keep being importable from the modules that raise them (robustft.train.config.RunError,
robustft.data.DataFormatError, ...), which re-export them from here."""

from __future__ import annotations

from pathlib import Path


class RunError(RuntimeError):
    """A run cannot start or finish; the message says which input is at fault."""


class RunPreempted(RunError):
    """A run stopped on SIGTERM after saving a checkpoint; running it again resumes there."""


class QLoRAUnavailableError(RunError):
    """4-bit QLoRA needs CUDA and bitsandbytes."""


class JudgeUnavailableError(RunError):
    """The judge endpoint cannot be reached or refuses the requests; the message names the URL."""


class ConfigError(ValueError):
    """One or more config values are invalid. The message has one line per error, each naming its key
    ("config key 'a.b': ..."), so its first line names the first bad key; `errors` holds the lines."""

    def __init__(self, errors: str | list[str], source: str | Path | None = None) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.source = source
        lines = list(self.errors)
        if len(lines) > 1 or source is not None:
            count = f"{len(lines)} error{'s' if len(lines) > 1 else ''}"
            lines.append(f"({count} in {source})" if source is not None else f"({count})")
        super().__init__("\n".join(lines))


class DataNotFoundError(FileNotFoundError):
    """Neither the local file nor the Hub dataset could be read."""


class DataFormatError(ValueError):
    """A data file exists but a row does not have the documented layout."""


class LabelsWithheldError(DataFormatError):
    """A local XTREME file without its labels (XTREME withholds test labels)."""


class MethodConfigError(ValueError):
    """A method or component setting is unknown, out of range or incompatible."""


class ModelNotFoundError(FileNotFoundError):
    """A Hub model's files are neither in the cache nor downloadable (offline node, no network)."""


class UnsupportedModelError(ValueError):
    """A model's config names a model type that transformers does not ship (remote code is never run)."""


class AmbiguousPaperValue(LookupError):
    """A lookup matched rows with different values; the caller must narrow it (metric, split)."""


class TableMismatchError(ValueError):
    """A results table does not hold exactly the runs of the config whose report reads it."""


class FindingError(ValueError):
    """A finding cannot be published: its grid is unfinished, a run's files are gone, or the README has no
    place for its quote."""
