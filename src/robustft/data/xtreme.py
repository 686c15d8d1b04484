"""XTREME (Hu et al., 2020): the nine tasks' data, from a local XTREME download or else the Hub.

Local files live under `<data_dir>/xtreme/<task>/` in the layout that google-research/xtreme's
`scripts/download_data.sh` and `utils_preprocess.py` write (the `download/` folder there). For each split
the candidates below are tried in order and the first that exists is read; when none exists the Hub
dataset is read instead. [x] = confirmed against google-research/xtreme (download script, preprocess
script, processors) or the XTREME translations bucket (gs://xtreme_translations, as cited by TFDS);
[chosen] = our choice, where XTREME ships no file.

    task      split            path under <data_dir>/xtreme/<task>/
    xnli      train            train-en.tsv                                            [x]
              dev / test       dev-<l>.tsv / test-<l>.tsv                              [x]
              translate-train  translate-train/en-<l>-translated.tsv                   [x] bucket (1)
                               translate-train/train-<l>.tsv                           [chosen]
    pawsx     (the same four forms as xnli)                                            [x] bucket (1)
    udpos     train/dev/test   {train,dev,test}-<l>.tsv                                [x]
              translate-train  translate-train/train-<l>.tsv                           [chosen]
    panx      (the same as udpos)                                                      [x] / [chosen]
    squad     train / dev      train-v1.1.json / dev-v1.1.json                         [x]
              translate-train  translate-train/squad.translate.train.en-<l>.json       [x] bucket (1)
                               translate-train/train-<l>.json                          [chosen]
    xquad     test             xquad.<l>.json                                          [x]
    mlqa      dev / test       MLQA_V1/<split>/<split>-context-<l>-question-<l>.json   [x]
    tydiqa    train            tydiqa-goldp-v1.1-train/tydiqa.goldp.<l>.train.json     [x] (2)
                               tydiqa-goldp-v1.1-train/tydiqa.<l>.train.json           [x] (3)
              dev (= test)     tydiqa-goldp-v1.1-dev/tydiqa.goldp.<l>.dev.json         [x] (2)
                               tydiqa-goldp-v1.1-dev/tydiqa-goldp-dev-<language>.json  [x] (4)
              translate-train  translate-train/tydiqa.translate.train.en-<l>.json      [x] bucket (1)
                               translate-train/train-<l>.json                          [chosen]
    bucc2018  dev / test       <l>-en.<split>.<l>, <l>-en.<split>.en, <l>-en.<split>.gold   [x]
    tatoeba   test             tatoeba.<l3>-eng.<l3>, tatoeba.<l3>-eng.eng             [x] (5)
                               <l>-en.<l>, <l>-en.en                                   [x] (6)

(1) file name as in gs://xtreme_translations/{XNLI,PAWSX,SQuAD,TyDiQA-GoldP}/translate-train/.
(2) utils_preprocess.tydiqa_preprocess's names. (3) the name scripts/train_qa.sh reads. (4) the original
release's name, before XTREME renames it. (5) LASER's files with 3-letter codes (TATOEBA_CODES), the
input of XTREME's preprocessing. (6) XTREME's output: its English side is sorted, so it is an error.

File formats, as XTREME writes them:
- XNLI / PAWS-X: no header, tab-separated `sentence1, sentence2, label`, written with `csv.writer`, so a
  cell holding a quote is wrapped in quotes with the inner quote doubled (the real PAWS-X files have
  such cells); we undo that quoting. Also read: a header line (`premise hypo label` of the raw XNLI-MT
  `multinli.train.en.tsv`, `id sentence1 sentence2 label` of the raw PAWS-X `x-final/en/train.tsv`, which
  also carries an id column; header files are raw text, so no unquoting), 4 columns without a header
  (`id, s1, s2, label`), and 5 columns (the bucket's translate-train files: English pair, translated pair,
  label). XNLI-MT's `contradictory` reads as `contradiction`. Label ids follow the Hub: XNLI entailment=0,
  neutral=1, contradiction=2 (facebook/xnli); PAWS-X 0/1.
- UD-POS / PAN-X: `token<TAB>TAG` lines, a blank line between sentences. A raw PAN-X `<l>:` token prefix
  (`en:Obama`) is stripped when it names the file's language.
- SQuAD / XQuAD / MLQA / TyDiQA: SQuAD v1.1 JSON.
- BUCC: `<id><TAB><sentence>` per line in the two sentence files, `<source id><TAB><target id>` in gold.
- Tatoeba: one sentence per line; line i of both files is a gold pair.

Unlabelled files are an error, not an empty label column: XTREME withholds test labels (XNLI/PAWS-X/
UD-POS/PAN-X test files have no label column, the QA test files' answers are blanked, the BUCC test gold
is deleted, and Tatoeba's English side is sorted). The DataFormatError names the file and says to
evaluate on dev or to move the file away so the labelled split is read from the Hub.

Readers are strict: a malformed row stops with file:line (a JSON path for SQuAD-format files). Two
documented exceptions drop rows and count them in the split's `source`: training QA questions whose
answer_start does not point at the answer text (machine-translated SQuAD has such answers; dev/test stay
strict), and rows of the bucket's PAWS-X translate-train files with a wrong field count or a label other
than 0/1 (TFDS skips them too: "some rows in the files have been wrongly populated").

Settings: `zero-shot` trains on English only; `translate-train-all` on English plus the translate-train
data of every language found locally, or, when the task folder has none, every language the Hub has
(facebook/xnli and google-research-datasets/paws-x non-English train splits: the dataset authors'
machine translations, XNLI-MT and PAWS-X translated_train, not XTREME's own). UD-POS and PAN-X have no
XTREME translations: translate-train-all there is English plus whatever files the user puts at
`translate-train/train-<l>.tsv`. SQuAD and TyDiQA translations are on no Hub dataset: put the bucket's
files in place. `load_xtreme_train` returns the languages it used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustft.data.base import SplitData
from robustft.errors import DataFormatError, DataNotFoundError, LabelsWithheldError

SETTINGS = ("zero-shot", "translate-train-all")
SPLITS = ("train", "dev", "test", "translate-train")

XNLI_LABELS = ("entailment", "neutral", "contradiction")  # facebook/xnli ClassLabel order
PAWSX_LABELS = ("0", "1")  # google-research-datasets/paws-x ClassLabel names
LABEL_ALIASES = {"contradictory": "contradiction"}  # XNLI-MT's spelling
# google/xtreme's ClassLabel orders (udpos.* pos_tags, PAN-X.* ner_tags).
UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip
PANX_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")

# Language names as google/xtreme's `udpos.<Name>` configs and TyDiQA's file names / question ids spell them.
LANGUAGE_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "de": "German",
    "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque",
    "fa": "Persian", "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi",
    "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "kk": "Kazakh",
    "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
    "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog",
    "tr": "Turkish", "ur": "Urdu", "vi": "Vietnamese", "wo": "Wolof", "yo": "Yoruba",
    "zh": "Chinese",
}  # fmt: skip
# XTREME's map between its 2-letter codes and Tatoeba's 3-letter ones (utils_preprocess.tatoeba_preprocess).
TATOEBA_CODES = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa",
    "et": "est", "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin",
    "hu": "hun", "id": "ind", "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz",
    "ko": "kor", "ml": "mal", "mr": "mar", "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh",
    "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl", "tr": "tur", "ur": "urd", "vi": "vie",
    "zh": "cmn", "en": "eng",
}  # fmt: skip

TRANSLATIONS_URL = "https://console.cloud.google.com/storage/browser/xtreme_translations"


# ------------------------------------------------------------------------------------------- split types


@dataclass
class TaggingSplit:
    tokens: list[list[str]]
    tags: list[list[str]]
    source: str

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[str]
    answer_starts: list[int]


@dataclass
class QASplit:
    examples: list[QAExample]
    source: str

    def __len__(self) -> int:
        return len(self.examples)


@dataclass
class RetrievalSplit:
    source_ids: list[str]  # the non-English side
    source_sentences: list[str]
    target_ids: list[str]  # English
    target_sentences: list[str]
    gold: list[tuple[str, str]]  # (source_id, target_id)
    source: str

    def __len__(self) -> int:
        return len(self.gold)


XtremeData = SplitData | TaggingSplit | QASplit | RetrievalSplit


# ------------------------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class XtremeTask:
    """One XTREME task, or a training corpus of one (SQuAD).

    `local_files` maps a split to its candidate paths under `<data_dir>/xtreme/<key>/` (first existing
    wins); `{lang}`, `{lang3}` (Tatoeba code) and `{name}` (lower-case language name) are filled in.
    `hub_config` is filled the same way (`{Name}`: capitalised name); `hub_splits` maps our split to the
    Hub's, and a split missing there has no Hub source. `hub_columns` names the Hub columns where they
    differ between datasets (classification: sentence 1, sentence 2, label; tagging: tokens, tags).
    `train_data` is the key whose English train split zero-shot trains on, `translate_train_data` the key
    whose English train + translate-train files translate-train-all trains on (None: not trained).
    """

    key: str
    paper_name: str
    kind: str  # "classification" | "tagging" | "qa" | "retrieval"
    languages: tuple[str, ...]
    metrics: tuple[str, ...]
    primary_metric: str
    labels: tuple[str, ...] | None
    local_files: dict[str, tuple[str, ...]]
    hub_id: str
    hub_config: str
    hub_splits: dict[str, str]
    hub_columns: tuple[str, ...] = ()
    train_data: str | None = None
    translate_train_data: str | None = None
    xtreme_translations: bool = False  # XTREME released machine-translated training data for it
    english_only_train: bool = False  # "train" is English; other languages are "translate-train"
    source_notes: dict[str, str] = field(default_factory=dict)  # split -> note appended to `source`

    @property
    def hub_translate_train(self) -> tuple[str, ...]:
        """Languages whose translate-train data the Hub dataset has."""
        if "translate-train" not in self.hub_splits:
            return ()
        return tuple(language for language in self.languages if language != "en")

    def local_dir(self, data_dir: str | Path) -> Path:
        return Path(data_dir) / "xtreme" / self.key

    def local_paths(self, data_dir: str | Path, split: str, language: str) -> list[Path]:
        return [self.local_dir(data_dir) / _fill(t, language) for t in self.templates(split)]

    def hub_source(self, split: str, language: str) -> str | None:
        """'<id> (config .., split ..)' for messages, or None when the Hub has no such data."""
        if split not in self.hub_splits:
            return None
        return (
            f"{self.hub_id} (config {_fill(self.hub_config, language)!r}, split {self.hub_splits[split]!r})"
        )

    def templates(self, split: str) -> tuple[str, ...]:
        try:
            return self.local_files[split]
        except KeyError:
            raise KeyError(
                f"{self.paper_name} has no split {split!r}; it has {', '.join(self.local_files)}"
            ) from None


PAIR_FILES = {
    "train": ("train-{lang}.tsv",),
    "dev": ("dev-{lang}.tsv",),
    "test": ("test-{lang}.tsv",),
    "translate-train": ("translate-train/en-{lang}-translated.tsv", "translate-train/train-{lang}.tsv"),
}
TAGGING_FILES = {
    "train": ("train-{lang}.tsv",),
    "dev": ("dev-{lang}.tsv",),
    "test": ("test-{lang}.tsv",),
    "translate-train": ("translate-train/train-{lang}.tsv",),
}
TYDIQA_DEV = (
    "tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json",
    "tydiqa-goldp-v1.1-dev/tydiqa-goldp-dev-{name}.json",
)
NO_TEST_SET = "TyDiQA-GoldP has no public test set: XTREME reports its dev set as test"

XTREME_TASKS: dict[str, XtremeTask] = {}
TRAINING_DATA: dict[str, XtremeTask] = {}  # corpora that only train XTREME tasks (SQuAD)


def _codes(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def register_xtreme_task(task: XtremeTask, registry: dict[str, XtremeTask] = XTREME_TASKS) -> XtremeTask:
    registry[task.key] = task
    return task


register_xtreme_task(
    XtremeTask(
        key="xnli",
        paper_name="XNLI",
        kind="classification",
        languages=_codes("ar bg de el en es fr hi ru sw th tr ur vi zh"),
        metrics=("accuracy",),
        primary_metric="accuracy",
        labels=XNLI_LABELS,
        local_files=PAIR_FILES,
        hub_id="facebook/xnli",
        hub_config="{lang}",
        hub_splits={"train": "train", "dev": "validation", "test": "test", "translate-train": "train"},
        hub_columns=("premise", "hypothesis", "label"),
        train_data="xnli",
        translate_train_data="xnli",
        xtreme_translations=True,
        english_only_train=True,
    )
)
register_xtreme_task(
    XtremeTask(
        key="pawsx",
        paper_name="PAWS-X",
        kind="classification",
        languages=_codes("de en es fr ja ko zh"),
        metrics=("accuracy",),
        primary_metric="accuracy",
        labels=PAWSX_LABELS,
        local_files=PAIR_FILES,
        hub_id="google-research-datasets/paws-x",
        hub_config="{lang}",
        hub_splits={"train": "train", "dev": "validation", "test": "test", "translate-train": "train"},
        hub_columns=("sentence1", "sentence2", "label"),
        train_data="pawsx",
        translate_train_data="pawsx",
        xtreme_translations=True,
        english_only_train=True,
    )
)
register_xtreme_task(
    XtremeTask(
        key="udpos",
        paper_name="UDPOS",
        kind="tagging",
        # XTREME's 33 UD-POS languages (google-research/xtreme); Wolof joined only in XTREME-R.
        languages=_codes(
            "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur vi "
            "yo zh"
        ),
        metrics=("f1",),
        primary_metric="f1",
        labels=UPOS_TAGS,
        local_files=TAGGING_FILES,
        hub_id="google/xtreme",
        hub_config="udpos.{Name}",
        hub_splits={"train": "train", "dev": "validation", "test": "test"},
        hub_columns=("tokens", "pos_tags"),
        train_data="udpos",
        translate_train_data="udpos",
    )
)
register_xtreme_task(
    XtremeTask(
        key="panx",
        paper_name="PANX-NER",
        kind="tagging",
        languages=_codes(
            "af ar bg bn de el en es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr ms my nl pt ru sw "
            "ta te th tl tr ur vi yo zh"
        ),
        metrics=("f1",),
        primary_metric="f1",
        labels=PANX_TAGS,
        local_files=TAGGING_FILES,
        hub_id="google/xtreme",
        hub_config="PAN-X.{lang}",
        hub_splits={"train": "train", "dev": "validation", "test": "test"},
        hub_columns=("tokens", "ner_tags"),
        train_data="panx",
        translate_train_data="panx",
    )
)
register_xtreme_task(
    XtremeTask(
        key="bucc2018",
        paper_name="BUCC",
        kind="retrieval",
        languages=("de", "fr", "ru", "zh"),
        metrics=("f1", "precision", "recall"),
        primary_metric="f1",
        labels=None,
        local_files={"dev": ("{lang}-en.dev.{lang}",), "test": ("{lang}-en.test.{lang}",)},
        # google/xtreme's bucc18 holds only the gold pairs: mining among them alone, with no distractor
        # sentences, would inflate F1 towards 1. So BUCC is read from the original release only.
        hub_id="google/xtreme",
        hub_config="bucc18.{lang}",
        hub_splits={},
    )
)
register_xtreme_task(
    XtremeTask(
        key="tatoeba",
        paper_name="Tatoeba",
        kind="retrieval",
        languages=_codes(
            "af ar bg bn de el es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr nl pt ru sw ta te th tl "
            "tr ur vi zh"
        ),
        metrics=("accuracy",),
        primary_metric="accuracy",
        labels=None,
        local_files={"test": ("tatoeba.{lang3}-eng.{lang3}", "{lang}-en.{lang}")},
        hub_id="google/xtreme",
        hub_config="tatoeba.{lang3}",
        hub_splits={"test": "validation"},
    )
)
register_xtreme_task(
    XtremeTask(
        key="xquad",
        paper_name="XQuAD",
        kind="qa",
        languages=_codes("ar de el en es hi ru th tr vi zh"),
        metrics=("f1", "em"),
        primary_metric="f1",
        labels=None,
        local_files={"test": ("xquad.{lang}.json",)},
        hub_id="google/xquad",
        hub_config="xquad.{lang}",
        hub_splits={"test": "validation"},
        train_data="squad",
        translate_train_data="squad",
    )
)
register_xtreme_task(
    XtremeTask(
        key="mlqa",
        paper_name="MLQA",
        kind="qa",
        languages=_codes("ar de en es hi vi zh"),
        metrics=("f1", "em"),
        primary_metric="f1",
        labels=None,
        local_files={
            "dev": ("MLQA_V1/dev/dev-context-{lang}-question-{lang}.json",),
            "test": ("MLQA_V1/test/test-context-{lang}-question-{lang}.json",),
        },
        hub_id="facebook/mlqa",
        hub_config="mlqa.{lang}.{lang}",
        hub_splits={"dev": "validation", "test": "test"},
        train_data="squad",
        translate_train_data="squad",
    )
)
register_xtreme_task(
    XtremeTask(
        key="tydiqa",
        paper_name="TyDiQA-GoldP",
        kind="qa",
        languages=_codes("ar bn en fi id ko ru sw te"),
        metrics=("f1", "em"),
        primary_metric="f1",
        labels=None,
        local_files={
            "train": (
                "tydiqa-goldp-v1.1-train/tydiqa.goldp.{lang}.train.json",
                "tydiqa-goldp-v1.1-train/tydiqa.{lang}.train.json",
            ),
            "dev": TYDIQA_DEV,
            "test": TYDIQA_DEV,
            "translate-train": (
                "translate-train/tydiqa.translate.train.en-{lang}.json",
                "translate-train/train-{lang}.json",
            ),
        },
        # All languages in one config; the question id's prefix names the language ("finnish-...").
        hub_id="google/xtreme",
        hub_config="tydiqa",
        hub_splits={"train": "train", "dev": "validation", "test": "validation"},
        train_data="squad",
        translate_train_data="tydiqa",
        xtreme_translations=True,
        source_notes={"test": NO_TEST_SET},
    )
)
register_xtreme_task(
    XtremeTask(
        key="squad",
        paper_name="SQuAD v1.1",
        kind="qa",
        languages=("en",),
        metrics=("f1", "em"),
        primary_metric="f1",
        labels=None,
        local_files={
            "train": ("train-v1.1.json",),
            "dev": ("dev-v1.1.json",),
            "translate-train": (
                "translate-train/squad.translate.train.en-{lang}.json",
                "translate-train/train-{lang}.json",
            ),
        },
        hub_id="rajpurkar/squad",
        hub_config="plain_text",
        hub_splits={"train": "train", "dev": "validation"},
        xtreme_translations=True,
        english_only_train=True,
    ),
    TRAINING_DATA,
)


def get_xtreme_task(key: str) -> XtremeTask:
    """An XTREME task, or a training corpus of one ("squad")."""
    task = XTREME_TASKS.get(key) or TRAINING_DATA.get(key)
    if task is None:
        known = ", ".join([*XTREME_TASKS, *TRAINING_DATA])
        raise KeyError(f"unknown XTREME task {key!r}; known: {known}")
    return task


def _lookup(table: dict[str, str], language: str, what: str) -> str:
    try:
        return table[language]
    except KeyError:
        raise KeyError(f"no {what} known for language {language!r}; add it to xtreme.py") from None


def _fill(template: str, language: str) -> str:
    """A path or config template with its language fields filled in."""
    fields = {"lang": language}
    if "{lang3}" in template:
        fields["lang3"] = _lookup(TATOEBA_CODES, language, "Tatoeba 3-letter code")
    if "{name}" in template or "{Name}" in template:
        fields["Name"] = _lookup(LANGUAGE_NAMES, language, "language name")
        fields["name"] = fields["Name"].lower()
    return template.format(**fields)


# ----------------------------------------------------------------------------------------- public loaders


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
                data = _read_hub(spec, split, language, cache_dir)
            except DataFormatError:
                raise
            except Exception as err:
                raise LabelsWithheldError(f"{withheld} (the Hub could not be read either: {err})") from err
            data.source = f"{data.source} (the local {found.name} has no labels)"
    else:
        try:
            data = _read_hub(spec, split, language, cache_dir)
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
    return _concat(parts), ["en", *languages]


def local_languages(task: str, split: str, data_dir: str | Path) -> list[str]:
    """The languages (2-letter codes, sorted) that have a local file of `split` under the task's folder."""
    spec = get_xtreme_task(task)
    found: set[str] = set()
    for template in spec.templates(split):
        folder = spec.local_dir(data_dir) / Path(template).parent
        if "{" not in template:  # one file for the corpus's only language (SQuAD's train-v1.1.json)
            if (folder / Path(template).name).exists():
                found.update(spec.languages)
            continue
        if not folder.is_dir():
            continue
        pattern = _template_pattern(Path(template).name)
        for entry in folder.iterdir():
            match = pattern.fullmatch(entry.name)
            language = _language_of(match) if match else None
            if language is not None:
                found.add(language)
    return sorted(found)


def _template_pattern(name: str) -> re.Pattern[str]:
    """A file-name template as a regex; a field used twice must repeat the same text."""
    groups = {"lang": "[a-z]{2,3}", "lang3": "[a-z]{3}", "name": "[a-z]+"}
    parts: list[str] = []
    seen: set[str] = set()
    for piece in re.split(r"(\{\w+\})", name):
        field_name = piece[1:-1] if piece.startswith("{") else None
        if field_name is None:
            parts.append(re.escape(piece))
        elif field_name in seen:
            parts.append(f"(?P={field_name})")
        else:
            seen.add(field_name)
            parts.append(f"(?P<{field_name}>{groups[field_name]})")
    return re.compile("".join(parts))


def _language_of(match: re.Match[str]) -> str | None:
    fields = match.groupdict()
    if "lang" in fields:
        return fields["lang"]
    if "lang3" in fields:
        return next((two for two, three in TATOEBA_CODES.items() if three == fields["lang3"]), None)
    return next((code for code, name in LANGUAGE_NAMES.items() if name.lower() == fields["name"]), None)


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


def _concat(parts: list[Any]) -> Any:
    """Several splits of one kind as one, in order."""
    first = parts[0]
    if len(parts) == 1:
        return first
    source = " + ".join(part.source for part in parts)
    if isinstance(first, SplitData):
        columns = range(len(first.texts))
        return SplitData(
            texts=[[text for part in parts for text in part.texts[i]] for i in columns],
            labels=[label for part in parts for label in part.labels],
            source=source,
        )
    if isinstance(first, TaggingSplit):
        return TaggingSplit(
            tokens=[s for part in parts for s in part.tokens],
            tags=[t for part in parts for t in part.tags],
            source=source,
        )
    return QASplit(examples=[e for part in parts for e in part.examples], source=source)


# ------------------------------------------------------------------------------------------ local readers


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


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a UTF-8 file; a BOM is dropped."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for line_no, line in enumerate(handle, start=1):
            yield line_no, line.rstrip("\r\n")


def _withheld(spec: XtremeTask, path: Path, split: str, language: str, missing: str) -> DataFormatError:
    """The error for a file without labels: XTREME withholds them."""
    options = []
    if split != "dev" and "dev" in spec.local_files:
        options.append("evaluate on split 'dev' instead")
    hub = spec.hub_source(split, language)
    if hub is not None:
        options.append(f"move this file away so that the labelled {split} split is read from the Hub: {hub}")
    else:
        options.append("replace it with the original release's labelled file")
    if spec.key == "bucc2018":
        options = [
            f"restore {language}-en.{split}.gold from the BUCC 2018 release "
            f"(bucc2018-{language}-en.training-gold.tar.bz2 holds XTREME's test split, "
            "https://comparable.limsi.fr/bucc2018/)"
        ]
    advice = ", or ".join(options)
    return LabelsWithheldError(
        f"{path}: {missing}: XTREME withholds the {spec.paper_name} {split} labels. "
        f"{advice[0].upper()}{advice[1:]}."
    )


def _unquote(cell: str) -> str:
    """Undo csv.writer's quoting (XTREME writes its TSVs with it): a quoted cell, inner quotes doubled."""
    if len(cell) >= 2 and cell[0] == cell[-1] == '"' and '"' not in cell[1:-1].replace('""', ""):
        return cell[1:-1].replace('""', '"')
    return cell


HEADER_ROLES = {
    "premise": 0,
    "sentence1": 0,
    "hypo": 1,
    "hypothesis": 1,
    "sentence2": 1,
    "label": 2,
    "gold_label": 2,
}
# Columns (sentence 1, sentence 2, label) of a headerless file, by its number of fields.
PAIR_LAYOUTS = {3: (0, 1, 2), 4: (1, 2, 3), 5: (2, 3, 4)}


def _pair_header(cells: list[str], where: str) -> tuple[int, int, int] | None:
    """The (sentence 1, sentence 2, label) columns of a header line; None when the line is data."""
    names = [cell.strip().lower() for cell in cells]
    if "label" not in names and "gold_label" not in names:
        return None
    roles: dict[int, int] = {}
    for index, name in enumerate(names):
        if name in HEADER_ROLES:
            roles.setdefault(HEADER_ROLES[name], index)
    if len(roles) < 3:
        raise DataFormatError(
            f"{where}: header {cells} lacks a sentence1/premise, sentence2/hypo or label column"
        )
    return roles[0], roles[1], roles[2]


def _label_id(spec: XtremeTask, raw: str) -> int | None:
    name = raw.strip()
    name = LABEL_ALIASES.get(name, name)
    return spec.labels.index(name) if spec.labels and name in spec.labels else None


def read_pair_tsv(spec: XtremeTask, path: Path, split: str, language: str) -> SplitData:
    """An XNLI / PAWS-X file in any of the layouts of the module docstring."""
    rows = [(line_no, line.split("\t")) for line_no, line in _lines(path) if line.strip()]
    if not rows:
        raise DataFormatError(f"{path}: file is empty")
    first_no, first = rows[0]
    columns = _pair_header(first, f"{path}:{first_no}")
    raw_text = columns is not None  # header files are raw text: no csv quoting to undo
    if columns is None:
        if len(first) == 2:
            raise _withheld(spec, path, split, language, "it has no label column (sentence1, sentence2 only)")
        if len(first) not in PAIR_LAYOUTS:
            raise DataFormatError(
                f"{path}:{first_no}: expected 3 tab-separated fields (sentence1, sentence2, label), or 4 "
                f"(id first) or 5 (XTREME translate-train), found {len(first)}"
            )
        columns = PAIR_LAYOUTS[len(first)]
    else:
        rows = rows[1:]
    n_fields = len(first)
    # The bucket's PAWS-X translations have known bad rows; TFDS skips them, and so do we (counted).
    lenient = spec.key == "pawsx" and split == "translate-train" and n_fields == 5
    first_texts: list[str] = []
    second_texts: list[str] = []
    labels: list[int] = []
    skipped = 0
    for line_no, cells in rows:
        where = f"{path}:{line_no}"
        label = _label_id(spec, cells[columns[2]]) if len(cells) == n_fields else None
        if label is None and lenient:
            skipped += 1
            continue
        if len(cells) != n_fields:
            raise DataFormatError(
                f"{where}: expected {n_fields} tab-separated fields (as line {first_no}), found {len(cells)}"
            )
        if label is None:
            choices = [*(spec.labels or ()), *LABEL_ALIASES]
            raise DataFormatError(f"{where}: label {cells[columns[2]]!r} is not one of {choices}")
        unquote = (lambda cell: cell) if raw_text else _unquote
        first_texts.append(unquote(cells[columns[0]]))
        second_texts.append(unquote(cells[columns[1]]))
        labels.append(label)
    if not labels:
        raise DataFormatError(f"{path}: no data rows")
    source = f"local:{path}"
    if skipped:
        source += f" ({skipped} rows with a wrong field count or label skipped, as TFDS does)"
    return SplitData(texts=[first_texts, second_texts], labels=labels, source=source)


def read_tagged_tsv(spec: XtremeTask, path: Path, split: str, language: str) -> TaggingSplit:
    """A UD-POS / PAN-X file: `token<TAB>TAG` lines, a blank line between sentences."""
    assert spec.labels is not None
    prefix = f"{language}:"  # raw PAN-X writes every token as "<lang>:<token>"
    sentences: list[list[str]] = []
    sentence_tags: list[list[str]] = []
    tokens: list[str] = []
    tags: list[str] = []
    for line_no, line in _lines(path):
        if not line.strip():
            if tokens:
                sentences.append(tokens)
                sentence_tags.append(tags)
                tokens, tags = [], []
            continue
        cells = line.split("\t")
        where = f"{path}:{line_no}"
        if len(cells) == 1 and not sentences and not tokens:
            raise _withheld(spec, path, split, language, "it has no tag column (tokens only)")
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


# One question as the QA readers see it: (where, id, question, context, answer texts, answer starts).
QARow = tuple[str, str, str, str, list[str], list[Any]]


def _answer_problem(context: str, texts: list[str], starts: list[Any]) -> str | None:
    """Why a question's answers are unusable, or None."""
    if not texts:
        return "no answers"
    if len(texts) != len(starts):
        return f"{len(texts)} answer texts but {len(starts)} answer_start values"
    for text, start in zip(texts, starts, strict=True):
        if not text:
            return "an answer text is empty"
        if not isinstance(start, int) or isinstance(start, bool):
            return f"answer_start {start!r} is not an integer"
        if context[start : start + len(text)] != text:
            return (
                f"answer {text!r} is not at answer_start {start} "
                f"(the context there reads {context[start : start + len(text)]!r})"
            )
    return None


def _qa_split(rows: list[QARow], source: str, strict: bool) -> QASplit:
    """Questions whose answers check out; a bad one stops (strict) or is dropped and counted."""
    examples: list[QAExample] = []
    dropped = 0
    for where, qid, question, context, texts, starts in rows:
        problem = _answer_problem(context, texts, starts)
        if problem is not None:
            if strict:
                raise DataFormatError(f"{where}: {problem}")
            dropped += 1
            continue
        examples.append(
            QAExample(id=qid, question=question, context=context, answers=texts, answer_starts=starts)
        )
    if not examples:
        raise DataFormatError(f"{source}: no usable questions")
    if dropped:
        source += f" ({dropped} questions whose answer_start does not point at the answer text dropped)"
    return QASplit(examples=examples, source=source)


def _field(record: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise DataFormatError(f"{where}: no {key!r} key")
    value = record[key]
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataFormatError(f"{where}: {key!r} is a {type(value).__name__}, expected {kind.__name__}")
    return value


def _squad_rows(path: Path) -> list[QARow]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    rows: list[QARow] = []
    for a, article in enumerate(_field(data, "data", list, str(path))):
        for p, paragraph in enumerate(_field(article, "paragraphs", list, f"{path}: data[{a}]")):
            here = f"{path}: data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", str, here)
            for q, qa in enumerate(_field(paragraph, "qas", list, here)):
                where = f"{here}.qas[{q}]"
                qid = qa.get("id") if isinstance(qa, dict) else None
                if not isinstance(qid, str | int) or isinstance(qid, bool):
                    raise DataFormatError(f"{where}: no string 'id'")
                where = f"{where} (id {qid})"
                question = _field(qa, "question", str, where)
                texts: list[str] = []
                starts: list[Any] = []
                for answer in _field(qa, "answers", list, where):
                    texts.append(_field(answer, "text", str, where))
                    starts.append(_field(answer, "answer_start", int, where))
                rows.append((where, str(qid), question, context, texts, starts))
    return rows


def read_squad_json(spec: XtremeTask, path: Path, split: str, language: str) -> QASplit:
    """A SQuAD v1.1-format file (SQuAD, XQuAD, MLQA, TyDiQA-GoldP, their translations)."""
    rows = _squad_rows(path)
    if rows and all(all(text == "" for text in row[4]) for row in rows):
        # XTREME's remove_qa_test_annotations leaves one {"answer_start": 0, "text": ""} per question.
        raise _withheld(spec, path, split, language, "every answer is blank")
    # Gold splits must be exact; machine-translated training answers are often misaligned.
    return _qa_split(rows, f"local:{path}", strict=split in ("dev", "test"))


def _id_sentences(path: Path) -> tuple[list[str], list[str]]:
    """A BUCC sentence file: `<id><TAB><sentence>` per line."""
    ids: list[str] = []
    sentences: list[str] = []
    seen: set[str] = set()
    for line_no, line in _lines(path):
        identifier, tab, sentence = line.partition("\t")
        if not tab or not identifier.strip():
            raise DataFormatError(f"{path}:{line_no}: expected '<id><TAB><sentence>'")
        if identifier in seen:
            raise DataFormatError(f"{path}:{line_no}: id {identifier!r} appears twice")
        seen.add(identifier)
        ids.append(identifier)
        sentences.append(sentence)
    if not ids:
        raise DataFormatError(f"{path}: file is empty")
    return ids, sentences


def read_bucc(spec: XtremeTask, path: Path, split: str, language: str) -> RetrievalSplit:
    """BUCC 2018 `<l>-en.<split>.{<l>,en,gold}` (path is the `.<l>` file)."""
    stem = f"{language}-en.{split}"
    target_path = path.with_name(f"{stem}.en")
    gold_path = path.with_name(f"{stem}.gold")
    if not target_path.exists():
        raise DataFormatError(f"{path}: its English side {target_path} is missing")
    if not gold_path.exists():
        raise _withheld(
            spec,
            path,
            split,
            language,
            f"its gold pairs {gold_path.name} are missing (XTREME's download deletes them)",
        )
    source_ids, source_sentences = _id_sentences(path)
    target_ids, target_sentences = _id_sentences(target_path)
    known_source, known_target = set(source_ids), set(target_ids)
    gold: list[tuple[str, str]] = []
    for line_no, line in _lines(gold_path):
        cells = line.split("\t")
        where = f"{gold_path}:{line_no}"
        if len(cells) != 2:
            raise DataFormatError(
                f"{where}: expected '<{language} id><TAB><en id>', found {len(cells)} field(s)"
            )
        if cells[0] not in known_source:
            raise DataFormatError(f"{where}: {cells[0]!r} is not an id of {path.name}")
        if cells[1] not in known_target:
            raise DataFormatError(f"{where}: {cells[1]!r} is not an id of {target_path.name}")
        gold.append((cells[0], cells[1]))
    if not gold:
        raise DataFormatError(f"{gold_path}: file is empty")
    return RetrievalSplit(
        source_ids=source_ids,
        source_sentences=source_sentences,
        target_ids=target_ids,
        target_sentences=target_sentences,
        gold=gold,
        source=f"local:{path} + {target_path.name} + {gold_path.name}",
    )


def read_tatoeba(spec: XtremeTask, path: Path, split: str, language: str) -> RetrievalSplit:
    """LASER's `tatoeba.<l3>-eng.{<l3>,eng}`: line i of the two files is a gold pair."""
    if not path.name.startswith("tatoeba."):
        # utils_preprocess.tatoeba_preprocess sorts the English side, so the pairs are gone.
        raise _withheld(spec, path, split, language, "its English side is sorted, so the gold pairs are gone")
    target_path = path.with_name(f"tatoeba.{_fill('{lang3}', language)}-eng.eng")
    if not target_path.exists():
        raise DataFormatError(f"{path}: its English side {target_path} is missing")
    source_sentences = [line for _, line in _lines(path)]
    target_sentences = [line for _, line in _lines(target_path)]
    if len(source_sentences) != len(target_sentences):
        raise DataFormatError(
            f"{path} has {len(source_sentences)} lines but {target_path} has {len(target_sentences)}: "
            "Tatoeba's files must be line-aligned"
        )
    if not source_sentences:
        raise DataFormatError(f"{path}: file is empty")
    ids = [str(i) for i in range(len(source_sentences))]
    return RetrievalSplit(
        source_ids=ids,
        source_sentences=source_sentences,
        target_ids=list(ids),
        target_sentences=target_sentences,
        gold=list(zip(ids, ids, strict=True)),
        source=f"local:{path} + {target_path.name}",
    )


# -------------------------------------------------------------------------------------------- Hub readers


def _read_hub(spec: XtremeTask, split: str, language: str, cache_dir: str | None) -> XtremeData:
    if split not in spec.hub_splits:
        raise LookupError(f"no Hub dataset holds {spec.paper_name} {split}")
    import datasets  # heavy import, only when the Hub is actually used

    config = _fill(spec.hub_config, language)
    hub_split = spec.hub_splits[split]
    dataset = datasets.load_dataset(spec.hub_id, config, split=hub_split, cache_dir=cache_dir)
    where = f"hub:{spec.hub_id}/{config}:{hub_split}"
    if spec.kind == "classification":
        return _hub_pairs(spec, dataset, where, split, language)
    if spec.kind == "tagging":
        return _hub_tagging(spec, dataset, where)
    if spec.kind == "qa":
        return _hub_qa(spec, dataset, where, split, language)
    return _hub_tatoeba(dataset, where)


def _columns(dataset: Any, names: tuple[str, ...], where: str) -> list[list[Any]]:
    missing = [name for name in names if name not in dataset.column_names]
    if missing:
        raise DataFormatError(f"{where}: no column(s) {missing}; it has {dataset.column_names}")
    return [list(dataset[name]) for name in names]


def _hub_pairs(spec: XtremeTask, dataset: Any, where: str, split: str, language: str) -> SplitData:
    assert spec.labels is not None
    first, second, raw_labels = _columns(dataset, spec.hub_columns, where)
    labels: list[int] = []
    for row, raw in enumerate(raw_labels):
        label = _label_id(spec, raw) if isinstance(raw, str) else raw if isinstance(raw, int) else None
        if label is None or not 0 <= label < len(spec.labels):
            raise DataFormatError(f"{where} row {row}: label {raw!r} is not one of {list(spec.labels)}")
        labels.append(label)
    if split == "translate-train" or (split == "train" and language != "en"):
        where += " (the dataset authors' machine translation, not XTREME's translate-train data)"
    return SplitData(texts=[list(map(str, first)), list(map(str, second))], labels=labels, source=where)


def _hub_tagging(spec: XtremeTask, dataset: Any, where: str) -> TaggingSplit:
    assert spec.labels is not None
    tag_column = spec.hub_columns[1]
    tokens, raw_tags = _columns(dataset, spec.hub_columns, where)
    # Integer tags are ClassLabel ids: their names come from the dataset's own features when it has them.
    inner = getattr(dataset.features.get(tag_column), "feature", None)
    names = list(getattr(inner, "names", None) or spec.labels)
    tags: list[list[str]] = []
    for row, (sentence, sentence_tags) in enumerate(zip(tokens, raw_tags, strict=True)):
        if any(isinstance(t, int) and not 0 <= t < len(names) for t in sentence_tags):
            raise DataFormatError(
                f"{where} row {row}: tag ids {sentence_tags} are not all in 0..{len(names) - 1}"
            )
        named = [names[t] if isinstance(t, int) else str(t) for t in sentence_tags]
        if len(named) != len(sentence):
            raise DataFormatError(f"{where} row {row}: {len(sentence)} tokens but {len(named)} tags")
        unknown = [tag for tag in named if tag not in spec.labels]
        if unknown:
            raise DataFormatError(f"{where} row {row}: tag(s) {unknown} not in {list(spec.labels)}")
        tags.append(named)
    return TaggingSplit(tokens=[list(map(str, s)) for s in tokens], tags=tags, source=where)


def _hub_qa(spec: XtremeTask, dataset: Any, where: str, split: str, language: str) -> QASplit:
    ids, questions, contexts, answers = _columns(dataset, ("id", "question", "context", "answers"), where)
    # google/xtreme's tydiqa config holds every language; the id's prefix names it ("finnish-...").
    prefix = f"{_fill('{name}', language)}-" if spec.key == "tydiqa" else ""
    rows: list[QARow] = []
    for row, (qid, question, context, answer) in enumerate(
        zip(ids, questions, contexts, answers, strict=True)
    ):
        if not str(qid).startswith(prefix):
            continue
        if not isinstance(answer, dict) or not {"text", "answer_start"} <= answer.keys():
            raise DataFormatError(f"{where} row {row}: answers {answer!r} lack 'text' / 'answer_start'")
        rows.append(
            (
                f"{where} row {row} (id {qid})",
                str(qid),
                question,
                context,
                list(answer["text"]),
                list(answer["answer_start"]),
            )
        )
    if not rows:
        raise LookupError(f"{where} has no questions in language {language!r}")
    return _qa_split(rows, where, strict=split in ("dev", "test"))


def _hub_tatoeba(dataset: Any, where: str) -> RetrievalSplit:
    sources, targets = _columns(dataset, ("source_sentence", "target_sentence"), where)
    ids = [str(i) for i in range(len(sources))]
    return RetrievalSplit(
        source_ids=ids,
        source_sentences=[str(s).rstrip("\r\n") for s in sources],
        target_ids=list(ids),
        target_sentences=[str(t).rstrip("\r\n") for t in targets],
        gold=list(zip(ids, ids, strict=True)),
        source=where,
    )
