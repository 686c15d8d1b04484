"""XTREME loading: the hand-made fixture tree, the real XNLI/PAWS-X files, every error path, Hub mapping."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from robustft.data.base import DataFormatError, DataNotFoundError, SplitData
from robustft.data.xtreme import (
    PANX_TAGS,
    SETTINGS,
    TRAINING_DATA,
    UPOS_TAGS,
    XNLI_LABELS,
    XTREME_TASKS,
    QASplit,
    RetrievalSplit,
    TaggingSplit,
    get_xtreme_task,
    load_xtreme_split,
    load_xtreme_train,
    local_languages,
)
from tests.helpers import FIXTURES, shared_data_dir

FIXTURE_TREE = FIXTURES / "xtreme"  # FIXTURES is the data_dir: files live in FIXTURES/xtreme/<task>/

# The contract's table (paper_name, kind, metrics with the primary first, test languages).
CONTRACT = {
    "xnli": ("XNLI", "classification", ("accuracy",), "ar bg de el en es fr hi ru sw th tr ur vi zh"),
    "pawsx": ("PAWS-X", "classification", ("accuracy",), "de en es fr ja ko zh"),
    "udpos": (
        "UDPOS",
        "tagging",
        ("f1",),
        "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur vi yo zh",
    ),
    "panx": (
        "PANX-NER",
        "tagging",
        ("f1",),
        "af ar bg bn de el en es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr ms my nl pt ru sw ta te "
        "th tl tr ur vi yo zh",
    ),
    "bucc2018": ("BUCC", "retrieval", ("f1", "precision", "recall"), "de fr ru zh"),
    "tatoeba": (
        "Tatoeba",
        "retrieval",
        ("accuracy",),
        "af ar bg bn de el es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr nl pt ru sw ta te th tl tr "
        "ur vi zh",
    ),
    "xquad": ("XQuAD", "qa", ("f1", "em"), "ar de el en es hi ru th tr vi zh"),
    "mlqa": ("MLQA", "qa", ("f1", "em"), "ar de en es hi vi zh"),
    "tydiqa": ("TyDiQA-GoldP", "qa", ("f1", "em"), "ar bn en fi id ko ru sw te"),
}

# Languages of the fixture tree per (task, split).
FIXTURE_LANGUAGES = {
    ("xnli", "train"): ["en"],
    ("xnli", "dev"): ["de", "en", "zh"],
    ("xnli", "test"): ["de", "en", "zh"],
    ("xnli", "translate-train"): ["de", "zh"],
    ("pawsx", "train"): ["en"],
    ("pawsx", "dev"): ["de", "en", "zh"],
    ("pawsx", "test"): ["de", "en", "zh"],
    ("pawsx", "translate-train"): ["de", "zh"],
    ("udpos", "train"): ["en"],
    ("udpos", "dev"): ["de", "en", "zh"],
    ("udpos", "test"): ["de", "en", "zh"],
    ("udpos", "translate-train"): [],
    ("panx", "train"): ["en"],
    ("panx", "dev"): ["de", "en", "zh"],
    ("panx", "test"): ["de", "en", "zh"],
    ("panx", "translate-train"): [],
    ("squad", "train"): ["en"],
    ("squad", "dev"): ["en"],
    ("squad", "translate-train"): ["de", "zh"],
    ("xquad", "test"): ["de", "en", "zh"],
    ("mlqa", "dev"): ["de", "en", "zh"],
    ("mlqa", "test"): ["de", "en", "zh"],
    ("tydiqa", "train"): ["en"],
    ("tydiqa", "dev"): ["en", "fi", "ru"],
    ("tydiqa", "test"): ["en", "fi", "ru"],
    ("tydiqa", "translate-train"): ["fi", "ru"],
    ("bucc2018", "dev"): ["de", "zh"],
    ("bucc2018", "test"): ["de", "zh"],
    ("tatoeba", "test"): ["de", "zh"],
}
FIXTURE_SPLITS = [(task, split, lang) for (task, split), langs in FIXTURE_LANGUAGES.items() for lang in langs]


def _size(data) -> int:
    if isinstance(data, RetrievalSplit):
        return min(len(data.source_sentences), len(data.target_sentences))
    return len(data)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ registry


def test_udpos_has_xtremes_33_languages_not_xtreme_rs_wolof() -> None:
    # google-research/xtreme's UD-POS test languages; Wolof ('wo') was added by XTREME-R.
    xtreme = "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur vi "
    xtreme += "yo zh"
    languages = XTREME_TASKS["udpos"].languages
    assert len(languages) == len(set(languages)) == 33 and "wo" not in languages
    assert sorted(languages) == sorted(xtreme.split())


def test_registry_follows_the_contract() -> None:
    assert set(XTREME_TASKS) == set(CONTRACT)
    for key, (paper_name, kind, metrics, languages) in CONTRACT.items():
        task = XTREME_TASKS[key]
        assert (task.key, task.paper_name, task.kind) == (key, paper_name, kind)
        assert task.metrics == metrics and task.primary_metric == metrics[0]
        assert task.languages == tuple(languages.split())
    assert SETTINGS == ("zero-shot", "translate-train-all")
    assert set(TRAINING_DATA) == {"squad"} and get_xtreme_task("squad").kind == "qa"
    with pytest.raises(KeyError, match="unknown XTREME task 'nope'"):
        get_xtreme_task("nope")


def test_labels_follow_the_hub_ids() -> None:
    # facebook/xnli's ClassLabel: entailment=0, neutral=1, contradiction=2; paws-x: 0/1.
    assert XTREME_TASKS["xnli"].labels == XNLI_LABELS == ("entailment", "neutral", "contradiction")
    assert XTREME_TASKS["pawsx"].labels == ("0", "1")
    assert XTREME_TASKS["udpos"].labels == UPOS_TAGS and len(UPOS_TAGS) == 17
    assert (
        XTREME_TASKS["panx"].labels
        == PANX_TAGS
        == ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
    )
    assert all(XTREME_TASKS[key].labels is None for key in ("xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba"))


# ------------------------------------------------------------------------------------------ fixture tree


@pytest.mark.parametrize(("task", "split"), sorted(FIXTURE_LANGUAGES))
def test_fixture_languages_are_discovered(task: str, split: str) -> None:
    assert local_languages(task, split, FIXTURES) == FIXTURE_LANGUAGES[(task, split)]


def test_every_task_has_english_and_two_other_languages() -> None:
    for key in XTREME_TASKS:
        found = {lang for (task, _), langs in FIXTURE_LANGUAGES.items() if task == key for lang in langs}
        others = found - {"en"}
        assert len(others) >= 2, key
        assert "en" in found or XTREME_TASKS[key].kind == "retrieval", key  # retrieval pairs with English


def test_every_fixture_file_loads_and_has_six_examples() -> None:
    read: set[Path] = set()
    for task, split, lang in FIXTURE_SPLITS:
        data = load_xtreme_split(task, split, lang, FIXTURES)
        assert _size(data) >= 6, (task, split, lang)
        assert data.source.startswith("local:"), data.source
        path = Path(data.source.removeprefix("local:").split(" ")[0])
        read.add(path.resolve())
        # BUCC and Tatoeba read their English (and gold) file beside the named one.
        read.update(p.resolve() for p in path.parent.glob(path.name.rsplit(".", 1)[0] + ".*"))
    files = {p.resolve() for p in FIXTURE_TREE.rglob("*") if p.is_file() and p.name != "README.md"}
    assert files - read == set()


def test_fixture_answer_starts_point_at_the_answer() -> None:
    checked = 0
    for path in FIXTURE_TREE.rglob("*.json"):
        for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    assert qa["answers"], (path, qa["id"])
                    for answer in qa["answers"]:
                        start, text = answer["answer_start"], answer["text"]
                        assert text and context[start : start + len(text)] == text, (path, qa["id"])
                        checked += 1
    assert checked > 100


def test_fixture_tags_and_labels_are_valid() -> None:
    seen_upos: set[str] = set()
    for task, split, lang in FIXTURE_SPLITS:
        data = load_xtreme_split(task, split, lang, FIXTURES)
        if isinstance(data, TaggingSplit):
            assert all(len(t) == len(g) for t, g in zip(data.tokens, data.tags, strict=True))
            if task == "udpos":
                seen_upos.update(tag for tags in data.tags for tag in tags)
            else:  # IOB2: an I- tag continues an entity of the same type
                for tags in data.tags:
                    for before, tag in zip(["O", *tags], tags, strict=False):
                        assert not tag.startswith("I-") or before[2:] == tag[2:], (split, lang, tags)
        if isinstance(data, SplitData):
            assert set(data.labels) == set(range(len(XTREME_TASKS[task].labels))), (task, split, lang)
    assert len(seen_upos) >= 15


def test_xnli_fixture_columns_quotes_and_translations() -> None:
    train = load_xtreme_split("xnli", "train", "en", FIXTURES)
    assert (
        train.texts[0][6] == 'She said "I will call you tomorrow" and hung up the phone.'
    )  # csv quoting undone
    assert train.texts[1][0] == "Some kids are outside kicking a ball." and train.labels[:3] == [0, 2, 1]
    # The bucket's 5-column layout: the translated pair is read; XNLI-MT's "contradictory" is contradiction.
    german = load_xtreme_split("xnli", "translate-train", "de", FIXTURES)
    assert german.texts[0][0] == "Die Kinder spielen nach der Schule im Park Fußball."
    assert german.labels == [0, 2, 1, 2, 0, 1]
    chinese = load_xtreme_split("xnli", "translate-train", "zh", FIXTURES)  # the simple train-<l>.tsv form
    assert chinese.source.endswith("translate-train/train-zh.tsv") and chinese.labels[0] == 0


def test_tagging_fixture_strips_the_panx_language_prefix() -> None:
    german = load_xtreme_split("panx", "dev", "de", FIXTURES)
    assert german.tokens[0] == ["Angela", "Merkel", "wurde", "in", "Hamburg", "geboren", "."]
    assert german.tags[0][:2] == ["B-PER", "I-PER"]
    chinese = load_xtreme_split("udpos", "dev", "zh", FIXTURES)
    assert chinese.tokens[0] == ["我", "喜欢", "喝", "茶", "。"] and chinese.tags[0][-1] == "PUNCT"


def test_qa_fixture_examples_and_tydiqa_test_note() -> None:
    dev = load_xtreme_split("squad", "dev", "en", FIXTURES)
    first = dev.examples[0]
    assert first.answers == ["the Black Forest", "Black Forest", "the Black Forest in Germany"]
    assert all(
        first.context[s : s + len(a)] == a for s, a in zip(first.answer_starts, first.answers, strict=True)
    )
    test = load_xtreme_split("tydiqa", "test", "fi", FIXTURES)
    assert "tydiqa.goldp.fi.dev.json" in test.source and "XTREME reports its dev set" in test.source
    assert test.examples[0].answers == ["Helsinki"] and test.examples[0].id.startswith("finnish-")


def test_retrieval_fixtures() -> None:
    bucc = load_xtreme_split("bucc2018", "dev", "de", FIXTURES)
    assert len(bucc.source_ids) == len(bucc.target_ids) == 8 and len(bucc.gold) == 5
    sentence = dict(zip(bucc.source_ids, bucc.source_sentences, strict=True))
    english = dict(zip(bucc.target_ids, bucc.target_sentences, strict=True))
    assert sentence[bucc.gold[0][0]].startswith("Der Ausschuss") and english[bucc.gold[0][1]].startswith(
        "The committee"
    )
    tatoeba = load_xtreme_split("tatoeba", "test", "zh", FIXTURES)  # zh -> XTREME's 3-letter "cmn"
    assert tatoeba.source.endswith("tatoeba.cmn-eng.cmn + tatoeba.cmn-eng.eng")
    assert (
        tatoeba.gold == [(str(i), str(i)) for i in range(8)] and tatoeba.target_sentences[0] == "I'm hungry."
    )


# ------------------------------------------------------------------------------------------- real files


def _real_dir() -> Path:
    path = shared_data_dir()
    if not (path / "xtreme").is_dir():
        pytest.skip(f"real XTREME files not found at {path}/xtreme (set ROBUSTFT_TEST_DATA)")
    return path


def test_real_dev_files_load_with_hub_label_ids() -> None:
    data_dir = _real_dir()
    xnli = local_languages("xnli", "dev", data_dir)
    assert xnli == sorted(CONTRACT["xnli"][3].split())
    for lang in xnli:
        data = load_xtreme_split("xnli", "dev", lang, data_dir)
        assert len(data) == 2490 and Counter(data.labels) == {0: 830, 1: 830, 2: 830}, lang
    english = load_xtreme_split("xnli", "dev", "en", data_dir)
    # Line 1 of dev-en.tsv: "And he said, Mama, I'm home." / "He called his mom ..." / neutral.
    assert english.texts[0][0] == "And he said, Mama, I'm home." and english.labels[:3] == [1, 2, 0]
    pawsx = local_languages("pawsx", "dev", data_dir)
    assert pawsx == sorted(CONTRACT["pawsx"][3].split())
    for lang in pawsx:
        data = load_xtreme_split("pawsx", "dev", lang, data_dir)
        assert len(data) == 2000 and set(data.labels) == {0, 1}, lang
        assert all(text.strip() for column in data.texts for text in column)
    assert Counter(load_xtreme_split("pawsx", "dev", "en", data_dir).labels) == {0: 1137, 1: 863}


def test_real_pawsx_csv_quoting_is_undone() -> None:
    data = load_xtreme_split("pawsx", "dev", "fr", _real_dir())
    quoted = [text for text in data.texts[0] if '"cimetière Macpelah"' in text]
    assert quoted and not any('""' in text for column in data.texts for text in column)


@pytest.mark.parametrize(
    ("task", "lang", "hub"), [("xnli", "de", "facebook/xnli"), ("pawsx", "en", "paws-x")]
)
def test_real_test_files_have_no_labels(task: str, lang: str, hub: str) -> None:
    data_dir = _real_dir()
    with pytest.raises(DataFormatError) as err:
        load_xtreme_split(task, "test", lang, data_dir)
    message = str(err.value)
    path = data_dir / "xtreme" / task / f"test-{lang}.tsv"
    assert message.startswith(f"{path}: it has no label column")
    assert "XTREME withholds" in message and "split 'dev'" in message and hub in message


# ----------------------------------------------------------------------------------- layout variants


def test_headers_id_columns_and_raw_text(tmp_path: Path) -> None:
    # Raw XNLI-MT multinli.train.en.tsv: a header, raw quotes, "contradictory".
    _write(
        tmp_path / "xtreme/xnli/train-en.tsv",
        'premise\thypo\tlabel\n"Yes," he said.\tHe agreed.\tentailment\n'
        "It rained.\tIt was dry.\tcontradictory\n",
    )
    xnli = load_xtreme_split("xnli", "train", "en", tmp_path)
    assert xnli.texts == [
        ['"Yes," he said.', "It rained."],
        ["He agreed.", "It was dry."],
    ] and xnli.labels == [0, 2]
    # Raw PAWS-X x-final/en/train.tsv: a header and an id column.
    _write(
        tmp_path / "xtreme/pawsx/train-en.tsv",
        "id\tsentence1\tsentence2\tlabel\n1\tA b .\tB a .\t0\n2\tC .\tC .\t1\n",
    )
    pawsx = load_xtreme_split("pawsx", "train", "en", tmp_path)
    assert pawsx.texts == [["A b .", "C ."], ["B a .", "C ."]] and pawsx.labels == [0, 1]
    # The same without the header line.
    _write(tmp_path / "xtreme/pawsx/dev-en.tsv", "7\tA b .\tB a .\t1\n")
    assert load_xtreme_split("pawsx", "dev", "en", tmp_path).labels == [1]


def test_tydiqa_original_dev_name_and_tatoeba_codes(tmp_path: Path) -> None:
    original = tmp_path / "xtreme/tydiqa/tydiqa-goldp-v1.1-dev/tydiqa-goldp-dev-finnish.json"
    original.parent.mkdir(parents=True)
    shutil.copy(FIXTURE_TREE / "tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.fi.dev.json", original)
    assert local_languages("tydiqa", "dev", tmp_path) == ["fi"]
    assert len(load_xtreme_split("tydiqa", "dev", "fi", tmp_path)) == 7
    _write(tmp_path / "xtreme/tatoeba/tatoeba.pes-eng.pes", "a\n")
    _write(tmp_path / "xtreme/tatoeba/tatoeba.pes-eng.eng", "b\n")
    assert local_languages("tatoeba", "test", tmp_path) == ["fa"]


def test_pawsx_bucket_translations_skip_bad_rows(tmp_path: Path) -> None:
    _write(
        tmp_path / "xtreme/pawsx/translate-train/en-de-translated.tsv",
        "A .\tB .\tA de .\tB de .\t1\nC .\tD .\tC de .\tD de .\tNS\nE .\tF .\tE de .\n",
    )
    data = load_xtreme_split("pawsx", "translate-train", "de", tmp_path)
    assert data.texts == [["A de ."], ["B de ."]] and data.labels == [1]
    assert "(2 rows with a wrong field count or label skipped" in data.source


# ------------------------------------------------------------------------------------------ error paths


@pytest.mark.parametrize(
    ("task", "relative", "text", "error"),
    [
        ("xnli", "dev-en.tsv", "a\tb\tneutral\nc\td\n", r"dev-en\.tsv:2: expected 3 tab-separated fields"),
        ("xnli", "dev-en.tsv", "a\tb\tneutral\nc\td\tmaybe\n", r"dev-en\.tsv:2: label 'maybe' is not one of"),
        ("xnli", "dev-en.tsv", "a\tb\tc\td\te\tf\n", r"dev-en\.tsv:1: expected 3 tab-separated fields"),
        ("xnli", "dev-en.tsv", "premise\tlabel\na\tneutral\n", r"dev-en\.tsv:1: header .* lacks"),
        ("udpos", "dev-en.tsv", "The\tDET\ncat\tCAT\n", r"dev-en\.tsv:2: tag 'CAT' is not one of"),
        ("udpos", "dev-en.tsv", "The\tDET\tx\n", r"dev-en\.tsv:1: expected 'token<TAB>tag', found 3"),
        ("udpos", "dev-en.tsv", "The\tDET\n\ncat\n", r"dev-en\.tsv:3: expected 'token<TAB>tag', found 1"),
        ("panx", "dev-en.tsv", "Obama\tB-PER\n\tO\n", r"dev-en\.tsv:2: empty token"),
        ("bucc2018", "de-en.dev.de", "no tab here\n", r"de-en\.dev\.de:1: expected '<id><TAB><sentence>'"),
    ],
)
def test_malformed_rows_name_file_and_line(
    tmp_path: Path, task: str, relative: str, text: str, error: str
) -> None:
    path = _write(tmp_path / "xtreme" / task / relative, text)
    if task == "bucc2018":
        _write(path.with_name("de-en.dev.en"), "en-1\tx\n")
        _write(path.with_name("de-en.dev.gold"), "de-1\ten-1\n")
    with pytest.raises(DataFormatError, match=error) as err:
        load_xtreme_split(task, "dev", "de" if task == "bucc2018" else "en", tmp_path)
    assert str(err.value).startswith(str(path))


def test_bucc_gold_must_name_known_ids(tmp_path: Path) -> None:
    folder = tmp_path / "xtreme/bucc2018"
    _write(folder / "de-en.dev.de", "de-1\tHallo.\n")
    _write(folder / "de-en.dev.en", "en-1\tHello.\n")
    _write(folder / "de-en.dev.gold", "de-1\ten-1\nde-2\ten-1\n")
    with pytest.raises(DataFormatError, match=r"de-en\.dev\.gold:2: 'de-2' is not an id of de-en\.dev\.de"):
        load_xtreme_split("bucc2018", "dev", "de", tmp_path)


def test_qa_errors_carry_a_json_path(tmp_path: Path) -> None:
    record = {"id": "q1", "question": "Who?", "answers": [{"text": "Bob", "answer_start": 3}]}
    payload = {"data": [{"paragraphs": [{"context": "It was Bob.", "qas": [record]}]}]}
    path = _write(tmp_path / "xtreme/mlqa/MLQA_V1/dev/dev-context-en-question-en.json", json.dumps(payload))
    with pytest.raises(DataFormatError) as err:
        load_xtreme_split("mlqa", "dev", "en", tmp_path)
    assert str(err.value).startswith(f"{path}: data[0].paragraphs[0].qas[0] (id q1): answer 'Bob' is not at")
    # Training data drops (and counts) a misaligned answer instead: machine translation produces them.
    translated = tmp_path / "xtreme/squad/translate-train/train-de.json"
    good = {"id": "q2", "question": "Wer?", "answers": [{"text": "Bob", "answer_start": 7}]}
    payload["data"][0]["paragraphs"][0]["qas"].append(good)
    _write(translated, json.dumps(payload))
    data = load_xtreme_split("squad", "translate-train", "de", tmp_path)
    assert [e.id for e in data.examples] == ["q2"] and "(1 questions whose answer_start" in data.source
    _write(translated, '{"data": [\n  {"paragraphs": ]}')
    with pytest.raises(DataFormatError, match=r"train-de\.json:2: not valid JSON"):
        load_xtreme_split("squad", "translate-train", "de", tmp_path)
    _write(translated, json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}))
    with pytest.raises(
        DataFormatError, match=r"train-de\.json: data\[0\]\.paragraphs\[0\]: no 'context' key"
    ):
        load_xtreme_split("squad", "translate-train", "de", tmp_path)


@pytest.mark.parametrize(
    ("task", "split", "lang", "files", "missing"),
    [
        ("udpos", "test", "de", {"test-de.tsv": "Der\nHund\n\nJa\n"}, "it has no tag column"),
        ("panx", "test", "en", {"test-en.tsv": "Obama\n"}, "it has no tag column"),
        (
            "xquad",
            "test",
            "de",
            {
                "xquad.de.json": json.dumps(
                    {
                        "data": [
                            {
                                "paragraphs": [
                                    {
                                        "context": "Text.",
                                        "qas": [
                                            {
                                                "id": "a",
                                                "question": "Q?",
                                                "answers": [{"answer_start": 0, "text": ""}],
                                            }
                                        ],
                                    }
                                ]
                            }
                        ]
                    }
                )
            },
            "every answer is blank",
        ),
        (
            "bucc2018",
            "test",
            "fr",
            {"fr-en.test.fr": "fr-1\tSalut.\n", "fr-en.test.en": "en-1\tHi.\n"},
            "gold",
        ),
        ("tatoeba", "test", "de", {"de-en.de": "Hallo.\n", "de-en.en": "Hello.\n"}, "English side is sorted"),
    ],
)
def test_withheld_labels_are_an_error(
    tmp_path: Path, task: str, split: str, lang: str, files: dict[str, str], missing: str
) -> None:
    for name, text in files.items():
        _write(tmp_path / "xtreme" / task / name, text)
    with pytest.raises(DataFormatError, match="XTREME withholds") as err:
        load_xtreme_split(task, split, lang, tmp_path)
    assert missing in str(err.value) and str(tmp_path) in str(err.value)


def test_tatoeba_files_must_be_aligned(tmp_path: Path) -> None:
    _write(tmp_path / "xtreme/tatoeba/tatoeba.deu-eng.deu", "Eins.\nZwei.\n")
    _write(tmp_path / "xtreme/tatoeba/tatoeba.deu-eng.eng", "One.\n")
    with pytest.raises(DataFormatError, match=r"has 2 lines but .*tatoeba\.deu-eng\.eng has 1"):
        load_xtreme_split("tatoeba", "test", "de", tmp_path)


def _hub_down(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    calls: list[tuple] = []

    def unreachable(path: str, name: str, split: str, cache_dir: str | None = None):
        calls.append((path, name, split))
        raise ConnectionError("no network here")

    monkeypatch.setattr("datasets.load_dataset", unreachable)
    return calls


@pytest.mark.parametrize(
    ("task", "split", "lang", "local", "hub"),
    [
        ("xnli", "dev", "de", "xnli/dev-de.tsv", "facebook/xnli (config 'de', split 'validation')"),
        ("udpos", "test", "de", "udpos/test-de.tsv", "google/xtreme (config 'udpos.German', split 'test')"),
        (
            "xquad",
            "test",
            "de",
            "xquad/xquad.de.json",
            "google/xquad (config 'xquad.de', split 'validation')",
        ),
        ("tatoeba", "test", "zh", "tatoeba/tatoeba.cmn-eng.cmn", "google/xtreme (config 'tatoeba.cmn'"),
        (
            "tydiqa",
            "dev",
            "fi",
            "tydiqa-goldp-dev-finnish.json",
            "google/xtreme (config 'tydiqa', split 'validation')",
        ),
        (
            "squad",
            "train",
            "en",
            "squad/train-v1.1.json",
            "rajpurkar/squad (config 'plain_text', split 'train')",
        ),
    ],
)
def test_missing_everywhere_names_local_path_and_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str, split: str, lang: str, local: str, hub: str
) -> None:
    pytest.importorskip("datasets")
    calls = _hub_down(monkeypatch)
    with pytest.raises(DataNotFoundError) as err:
        load_xtreme_split(task, split, lang, tmp_path)
    message = str(err.value)
    assert local in message and str(tmp_path / "xtreme") in message
    assert hub in message and "ConnectionError: no network here" in message
    assert len(calls) == 1


def test_translations_without_a_hub_source_say_where_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _hub_down(monkeypatch)
    with pytest.raises(DataNotFoundError, match=r"squad\.translate\.train\.en-de\.json.*xtreme_translations"):
        load_xtreme_split("squad", "translate-train", "de", tmp_path)
    with pytest.raises(DataNotFoundError, match="XTREME released no translations of UDPOS"):
        load_xtreme_split("udpos", "translate-train", "de", tmp_path)
    with pytest.raises(DataNotFoundError, match=r"translate-train-all for XQuAD needs .*xtreme_translations"):
        load_xtreme_train("xquad", "translate-train-all", tmp_path)
    assert calls == []


def test_requests_the_data_cannot_answer() -> None:
    with pytest.raises(KeyError, match="XQuAD has no split 'dev'; it has test"):
        load_xtreme_split("xquad", "dev", "de", FIXTURES)
    with pytest.raises(ValueError, match="English is split 'train'"):
        load_xtreme_split("xnli", "translate-train", "en", FIXTURES)
    with pytest.raises(ValueError, match="is split 'translate-train'"):
        load_xtreme_split("xnli", "train", "de", FIXTURES)
    with pytest.raises(ValueError, match="pairs each language with English"):
        load_xtreme_split("bucc2018", "dev", "en", FIXTURES)
    with pytest.raises(KeyError, match="no Tatoeba 3-letter code known for language 'xx'"):
        load_xtreme_split("tatoeba", "test", "xx", FIXTURES)


# ------------------------------------------------------------------------------------------------ the Hub


class _FakeHub:
    """Stands in for datasets.load_dataset: returns in-memory Datasets keyed by (path, config, split)."""

    def __init__(self, tables: dict[tuple[str, str, str], object]) -> None:
        self.tables = tables
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, path: str, name: str, split: str, cache_dir: str | None = None):
        self.calls.append((path, name, split))
        try:
            return self.tables[(path, name, split)]
        except KeyError:
            raise FileNotFoundError(f"{path}/{name}:{split}") from None


def _dataset(columns: dict, features: dict | None = None):
    datasets = pytest.importorskip("datasets")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features) if features else None)


def test_hub_xnli_and_pawsx_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    xnli = _dataset(
        {"premise": ["P0", "P1"], "hypothesis": ["H0", "H1"], "label": [2, 0]},
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=list(XNLI_LABELS)),
        },
    )
    pawsx = _dataset({"id": [1], "sentence1": ["A"], "sentence2": ["B"], "label": ["1"]})
    hub = _FakeHub(
        {
            ("facebook/xnli", "de", "validation"): xnli,
            ("google-research-datasets/paws-x", "fr", "train"): pawsx,
        }
    )
    monkeypatch.setattr("datasets.load_dataset", hub)
    data = load_xtreme_split("xnli", "dev", "de", tmp_path)
    assert data.texts == [["P0", "P1"], ["H0", "H1"]] and data.labels == [2, 0]
    assert data.source == "hub:facebook/xnli/de:validation"
    translated = load_xtreme_split("pawsx", "translate-train", "fr", tmp_path)
    assert translated.labels == [1] and "not XTREME's translate-train data" in translated.source
    hub.tables[("facebook/xnli", "de", "test")] = _dataset(
        {"premise": ["P"], "hypothesis": ["H"], "label": [3]}
    )
    with pytest.raises(DataFormatError, match=r"hub:facebook/xnli/de:test row 0: label 3"):
        load_xtreme_split("xnli", "test", "de", tmp_path)


@pytest.mark.parametrize(
    ("task", "config", "column", "names", "ids", "expected"),
    [
        (
            "udpos",
            "udpos.German",
            "pos_tags",
            list(UPOS_TAGS),
            [5, 7, 15, 12],
            ["DET", "NOUN", "VERB", "PUNCT"],
        ),
        ("panx", "PAN-X.de", "ner_tags", list(PANX_TAGS), [1, 2, 0, 5], ["B-PER", "I-PER", "O", "B-LOC"]),
    ],
)
def test_hub_tagging_maps_class_label_ids_to_names(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    task: str,
    config: str,
    column: str,
    names: list[str],
    ids: list[int],
    expected: list[str],
) -> None:
    datasets = pytest.importorskip("datasets")
    features = {
        "tokens": datasets.List(datasets.Value("string")),
        column: datasets.List(datasets.ClassLabel(names=names)),
    }
    table = _dataset({"tokens": [["Der", "Hund", "bellt", "."]], column: [ids]}, features)
    hub = _FakeHub({("google/xtreme", config, "test"): table})
    monkeypatch.setattr("datasets.load_dataset", hub)
    data = load_xtreme_split(task, "test", "de", tmp_path)
    assert data.tokens == [["Der", "Hund", "bellt", "."]] and data.tags == [expected]
    assert data.source == f"hub:google/xtreme/{config}:test"


def test_hub_tagging_checks_lengths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _dataset({"tokens": [["a", "b"]], "ner_tags": [["O"]]})
    monkeypatch.setattr(
        "datasets.load_dataset", _FakeHub({("google/xtreme", "PAN-X.en", "validation"): table})
    )
    with pytest.raises(DataFormatError, match="row 0: 2 tokens but 1 tags"):
        load_xtreme_split("panx", "dev", "en", tmp_path)


def test_hub_qa_xquad_and_tydiqa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    context = "Die Donau fließt ins Schwarze Meer."
    xquad = _dataset(
        {
            "id": ["q1"],
            "context": [context],
            "question": ["Wohin fließt die Donau?"],
            "answers": [{"text": ["ins Schwarze Meer"], "answer_start": [17]}],
        }
    )
    tydiqa = _dataset(
        {
            "id": ["finnish-1-0", "english-2-0"],
            "title": ["", ""],
            "context": ["Helsinki on pääkaupunki.", "Helsinki is the capital."],
            "question": ["Mikä?", "What?"],
            "answers": [
                {"text": ["Helsinki"], "answer_start": [0]},
                {"text": ["Helsinki"], "answer_start": [0]},
            ],
        }
    )
    hub = _FakeHub(
        {("google/xquad", "xquad.de", "validation"): xquad, ("google/xtreme", "tydiqa", "validation"): tydiqa}
    )
    monkeypatch.setattr("datasets.load_dataset", hub)
    data = load_xtreme_split("xquad", "test", "de", tmp_path)
    assert isinstance(data, QASplit) and data.source == "hub:google/xquad/xquad.de:validation"
    example = data.examples[0]
    assert (example.id, example.answers, example.answer_starts) == ("q1", ["ins Schwarze Meer"], [17])
    finnish = load_xtreme_split("tydiqa", "test", "fi", tmp_path)
    assert [e.id for e in finnish.examples] == [
        "finnish-1-0"
    ] and "XTREME reports its dev set" in finnish.source
    with pytest.raises(DataNotFoundError, match="no questions in language 'ru'"):
        load_xtreme_split("tydiqa", "dev", "ru", tmp_path)
    hub.tables[("google/xquad", "xquad.de", "validation")] = _dataset(
        {
            "id": ["q"],
            "context": [context],
            "question": ["?"],
            "answers": [{"text": ["Meer"], "answer_start": [0]}],
        }
    )
    with pytest.raises(
        DataFormatError, match=r"hub:google/xquad/xquad\.de:validation row 0 \(id q\): answer 'Meer'"
    ):
        load_xtreme_split("xquad", "test", "de", tmp_path)


def test_hub_tatoeba(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tatoeba = _dataset(
        {
            "source_sentence": ["Ich habe Hunger.\n", "Danke.\n"],
            "target_sentence": ["I am hungry.\n", "Thanks.\n"],
            "source_lang": ["deu", "deu"],
            "target_lang": ["eng", "eng"],
        }
    )
    monkeypatch.setattr(
        "datasets.load_dataset", _FakeHub({("google/xtreme", "tatoeba.deu", "validation"): tatoeba})
    )
    data = load_xtreme_split("tatoeba", "test", "de", tmp_path)
    assert data.source_sentences == ["Ich habe Hunger.", "Danke."] and data.target_sentences == [
        "I am hungry.",
        "Thanks.",
    ]
    assert data.gold == [("0", "0"), ("1", "1")]


def test_bucc_is_never_read_from_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub's bucc18 holds only the gold pairs: mined alone they would inflate F1, so it is not used."""

    def hub(*args, **kwargs):
        raise AssertionError("the Hub must not be asked for BUCC")

    monkeypatch.setattr("datasets.load_dataset", hub)
    with pytest.raises(DataNotFoundError, match="original release only"):
        load_xtreme_split("bucc2018", "test", "de", tmp_path)
    _write(tmp_path / "xtreme/bucc2018/fr-en.test.fr", "fr-1\tSalut.\n")
    _write(tmp_path / "xtreme/bucc2018/fr-en.test.en", "en-1\tHi.\n")
    with pytest.raises(DataFormatError, match=r"Restore fr-en\.test\.gold from the BUCC 2018 release"):
        load_xtreme_split("bucc2018", "test", "fr", tmp_path)


# ------------------------------------------------------------------------------------------ training data


@pytest.mark.parametrize(
    ("task", "zero_shot_size", "languages", "all_size"),
    [
        ("xnli", 9, ["en", "de", "zh"], 21),
        ("pawsx", 9, ["en", "de", "zh"], 21),
        ("udpos", 6, ["en"], 6),
        ("panx", 6, ["en"], 6),
        ("xquad", 8, ["en", "de", "zh"], 20),
        ("mlqa", 8, ["en", "de", "zh"], 20),
        ("tydiqa", 8, ["en", "fi", "ru"], 18),
    ],
)
def test_load_xtreme_train_settings(
    task: str, zero_shot_size: int, languages: list[str], all_size: int
) -> None:
    data, used = load_xtreme_train(task, "zero-shot", FIXTURES)
    assert used == ["en"] and len(data) == zero_shot_size
    if languages == ["en"]:  # no translations: a zero-shot run under another name, unless asked for
        with pytest.raises(DataNotFoundError, match="english_only_translate_train"):
            load_xtreme_train(task, "translate-train-all", FIXTURES)
    data, used = load_xtreme_train(task, "translate-train-all", FIXTURES, english_only_ok=True)
    assert used == languages and len(data) == all_size
    assert data.source.count(" + ") >= len(languages) - 1


def test_zero_shot_qa_trains_on_squad_and_tydiqa_all_on_tydiqa() -> None:
    squad, _ = load_xtreme_train("tydiqa", "zero-shot", FIXTURES)
    assert "squad/train-v1.1.json" in squad.source
    tydiqa, _ = load_xtreme_train("tydiqa", "translate-train-all", FIXTURES)
    assert tydiqa.source.startswith(
        f"local:{FIXTURE_TREE}/tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json"
    )
    assert "tydiqa.translate.train.en-ru.json" in tydiqa.source


def test_user_translations_join_udpos_translate_train_all(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE_TREE / "udpos", tmp_path / "xtreme/udpos")
    _write(tmp_path / "xtreme/udpos/translate-train/train-de.tsv", "Der\tDET\nHund\tNOUN\nbellt\tVERB\n")
    data, used = load_xtreme_train("udpos", "translate-train-all", tmp_path)
    assert used == ["en", "de"] and len(data) == 7 and data.tokens[-1] == ["Der", "Hund", "bellt"]


def test_translate_train_all_falls_back_to_hub_languages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(FIXTURE_TREE / "pawsx/train-en.tsv", _write(tmp_path / "xtreme/pawsx/train-en.tsv", ""))
    table = _dataset({"sentence1": ["A"], "sentence2": ["B"], "label": [0]})
    others = ["de", "es", "fr", "ja", "ko", "zh"]
    hub = _FakeHub({("google-research-datasets/paws-x", lang, "train"): table for lang in others})
    monkeypatch.setattr("datasets.load_dataset", hub)
    data, used = load_xtreme_train("pawsx", "translate-train-all", tmp_path)
    assert used == ["en", *others] and len(data) == 9 + 6
    assert [call[1] for call in hub.calls] == others


def test_load_xtreme_train_refusals() -> None:
    with pytest.raises(
        ValueError, match="BUCC is not trained: it is scored with the encoder of the XNLI run"
    ):
        load_xtreme_train("bucc2018", "zero-shot", FIXTURES)
    with pytest.raises(ValueError, match="unknown setting 'translate-train'"):
        load_xtreme_train("xnli", "translate-train", FIXTURES)
    with pytest.raises(KeyError, match="unknown XTREME task 'squad'"):
        load_xtreme_train("squad", "zero-shot", FIXTURES)


def test_unlabelled_local_test_falls_back_to_the_hubs_labelled_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    labelled = _dataset(
        {"premise": ["P0"], "hypothesis": ["H0"], "label": [1]},
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=list(XNLI_LABELS)),
        },
    )
    monkeypatch.setattr("datasets.load_dataset", _FakeHub({("facebook/xnli", "de", "test"): labelled}))
    data = load_xtreme_split("xnli", "test", "de", _real_dir())  # the real local file has no labels
    assert data.labels == [1] and "the local test-de.tsv has no labels" in data.source
