"""The public loaders: one split of one language (local files first, else the Hub), and a task's training
data in a setting (English, plus every translation found for translate-train-all)."""

from __future__ import annotations

from pathlib import Path

from robustft.data.base import SplitData
from robustft.data.xtreme.hub import read_hub
from robustft.data.xtreme.local_files import local_languages
from robustft.data.xtreme.qa import read_squad_json
from robustft.data.xtreme.retrieval import read_bucc, read_tatoeba
from robustft.data.xtreme.sentence_pairs import read_pair_tsv
from robustft.data.xtreme.spec import SETTINGS, TRANSLATIONS_URL, XtremeTask
from robustft.data.xtreme.splits import QASplit, TaggingSplit, XtremeData, concat_splits
from robustft.data.xtreme.tagging import read_tagged_tsv
from robustft.data.xtreme.tasks import XTREME_TASKS, get_xtreme_task
from robustft.errors import DataFormatError, DataNotFoundError, LabelsWithheldError


def load_xtreme_split(
    task: str, split: str, language: str, data_dir: str | Path, cache_dir: str | None = None
) -> XtremeData:
    """One language of one split: local XTREME files first, the Hub when they are absent.

    Classification gives a SplitData (texts=[sentence1s, sentence2s], labels=Hub ids), tagging a
    TaggingSplit, QA a QASplit, retrieval a RetrievalSplit. One DataNotFoundError names the local path
    and the Hub dataset when neither can be read.
    """
    spec = get_xtreme_task(task)
    _check_request(spec, split, language)
    paths = spec.local_paths(data_dir, split, language)
    found = next((path for path in paths if path.exists()), None)
    if found is not None:
        try:
            data = _read_local(spec, split, language, found)
        except LabelsWithheldError as withheld:
            # XTREME's download has unlabelled test files; the Hub's copies of the original releases
            # carry the labels, so a machine that reaches the Hub (or has it cached) scores the real test.
            if spec.hub_source(split, language) is None:
                raise
            try:
                data = read_hub(spec, split, language, cache_dir)
            except DataFormatError:
                raise
            except Exception as err:
                raise LabelsWithheldError(f"{withheld} (the Hub could not be read either: {err})") from err
            data.source = f"{data.source} (the local {found.name} has no labels)"
    else:
        try:
            data = read_hub(spec, split, language, cache_dir)
        except DataFormatError:
            raise  # the Hub answered but a row is wrong: that is not "no data"
        except Exception as err:  # network, offline mode, missing cache, no Hub source: "not available"
            raise DataNotFoundError(_not_found_message(spec, split, language, paths, err)) from err
    if split in spec.source_notes:
        data.source = f"{data.source} ({spec.source_notes[split]})"
    return data


def load_xtreme_train(
    task: str,
    setting: str,
    data_dir: str | Path,
    cache_dir: str | None = None,
    split: str = "train",
    english_only_ok: bool = False,
) -> tuple[SplitData | TaggingSplit | QASplit, list[str]]:
    """The training data of a task in a setting, and the languages it holds (English first).

    zero-shot: the English `split` of the task's training corpus (SQuAD for the QA tasks).
    translate-train-all: that English split plus the translate-train data of every language found
    under the corpus's local `translate-train/` folder or, when there is none, every language the Hub has.
    Where that finds no translation at all (UD-POS, PAN-X: XTREME released none), the run would be a
    zero-shot run under another name, so it stops unless `english_only_ok` says to train on English.
    """
    spec = XTREME_TASKS.get(task)
    if spec is None:
        raise KeyError(f"unknown XTREME task {task!r}; known: {', '.join(XTREME_TASKS)}")
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; known: {', '.join(SETTINGS)}")
    if spec.train_data is None or spec.translate_train_data is None:
        raise ValueError(
            f"{spec.paper_name} is not trained: it is scored with the encoder of the XNLI run of the same "
            "model, setting, method and seed"
        )
    if setting == "zero-shot":
        return load_xtreme_split(spec.train_data, split, "en", data_dir, cache_dir), ["en"]
    corpus = get_xtreme_task(spec.translate_train_data)
    languages = [lang for lang in local_languages(corpus.key, "translate-train", data_dir) if lang != "en"]
    if not languages:
        languages = list(corpus.hub_translate_train)
    if not languages and corpus.xtreme_translations:
        folder = corpus.local_dir(data_dir) / "translate-train"
        names = ", ".join(corpus.local_files["translate-train"])
        raise DataNotFoundError(
            f"translate-train-all for {spec.paper_name} needs XTREME's machine-translated "
            f"{corpus.paper_name} training data, and {folder} has none (no Hub dataset holds it). "
            f"Download it from {TRANSLATIONS_URL} into that folder ({names})."
        )
    if not languages and not english_only_ok:
        folder = corpus.local_dir(data_dir) / "translate-train"
        raise DataNotFoundError(
            f"translate-train-all for {spec.paper_name} found no translated training data in {folder} "
            f"({', '.join(corpus.local_files['translate-train'])}) and XTREME released none: put "
            "translations there, or set the run setting english_only_translate_train: true to train on "
            "English alone (the report then lists English as the only training language)"
        )
    parts = [load_xtreme_split(corpus.key, split, "en", data_dir, cache_dir)]
    parts += [
        load_xtreme_split(corpus.key, "translate-train", lang, data_dir, cache_dir) for lang in languages
    ]
    return concat_splits(parts), ["en", *languages]


def _check_request(spec: XtremeTask, split: str, language: str) -> None:
    spec.templates(split)  # KeyError for a split the task does not have
    if split == "translate-train" and language == "en":
        raise ValueError("translate-train is machine-translated from English: English is split 'train'")
    if split == "train" and spec.english_only_train and language != "en":
        raise ValueError(
            f"{spec.paper_name}'s train split is English; machine-translated training data in "
            f"{language!r} is split 'translate-train'"
        )
    if spec.kind == "retrieval" and language == "en":
        raise ValueError(f"{spec.paper_name} pairs each language with English: pick a non-English language")


def _not_found_message(spec: XtremeTask, split: str, language: str, paths: list[Path], err: Exception) -> str:
    from robustft.offline import offline_variables_set  # only the error path needs it

    files = " or ".join(map(str, paths))
    what = f"no data for {spec.paper_name} {split} ({language}): local file {files} does not exist"
    hub = spec.hub_source(split, language)
    if hub is not None:
        switches = offline_variables_set()
        offline = (
            f" This job runs offline ({', '.join(switches)}), so only the local cache was read."
            if switches
            else ""
        )
        return (
            f"{what} and the Hub dataset {hub} could not be loaded ({type(err).__name__}: {err}).{offline} "
            "Put the file that google-research/xtreme's scripts/download_data.sh writes at that path, or "
            "fetch the Hub dataset on a machine that reaches the Hub."
        )
    if split == "translate-train" and spec.xtreme_translations:
        return f"{what}, and no Hub dataset holds it: download XTREME's translations from {TRANSLATIONS_URL}."
    if split == "translate-train":
        return f"{what}: XTREME released no translations of {spec.paper_name}; put your own file there."
    if spec.key == "bucc2018":
        return (
            f"{what}. BUCC is read from the original release only (the Hub's copy holds just the gold "
            "pairs, which would inflate F1): run google-research/xtreme's scripts/download_data.sh, or "
            "unpack https://comparable.limsi.fr/bucc2018/ there."
        )
    return f"{what}, and no Hub dataset holds {spec.paper_name} {split}."


def _read_local(spec: XtremeTask, split: str, language: str, path: Path) -> XtremeData:
    if spec.kind == "classification":
        return read_pair_tsv(spec, path, split, language)
    if spec.kind == "tagging":
        return read_tagged_tsv(spec, path, split, language)
    if spec.kind == "qa":
        return read_squad_json(spec, path, split, language)
    if spec.key == "bucc2018":
        return read_bucc(spec, path, split, language)
    return read_tatoeba(spec, path, split, language)
