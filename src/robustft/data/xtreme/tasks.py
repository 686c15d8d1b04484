"""The XTREME task registry: the nine tasks of Hu et al. (2020), and SQuAD, the corpus the QA tasks train on.

The candidate local files of each split are the ones the package docstring's table lists.
"""

from __future__ import annotations

from robustft.data.xtreme.spec import PANX_TAGS, PAWSX_LABELS, UPOS_TAGS, XNLI_LABELS, XtremeTask

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
