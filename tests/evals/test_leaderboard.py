"""Open LLM Leaderboard tasks: local task YAMLs from the shared files, upstream prompts, results, resuming."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from robustft.data import DataFormatError
from robustft.evals import leaderboard
from robustft.evals.leaderboard import (
    LEADERBOARD_TASKS,
    MMLU_SUBJECTS,
    get_leaderboard_task,
    leaderboard_record,
    lm_eval_tasks_dir,
    materialize_local_task,
    run_leaderboard,
    task_manager_for,
)
from tests.helpers import shared_data_dir

CONTRACT_FIELDS = {
    "task", "metric", "value", "stderr", "n", "num_fewshot", "status", "reason", "lm_eval_version", "limit",
}  # fmt: skip


@pytest.fixture(scope="module")
def data_dir() -> Path:
    path = shared_data_dir()
    if not (path / "leaderboard").is_dir():
        pytest.skip(f"leaderboard files not found under {path} (set ROBUSTFT_TEST_DATA)")
    return path


@pytest.fixture(scope="module")
def task_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lm_eval_tasks")


@pytest.fixture(scope="module")
def tiny_llama(data_dir: Path):
    """A random 2-layer Llama with a 400-token byte-level BPE trained on ARC questions (a real tokenizer,
    so lm-eval's context/continuation splitting is exercised as with a real model)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    lines = (data_dir / "leaderboard/arc_challenge/ARC-Challenge-Train.jsonl").read_text().splitlines()
    texts = [json.loads(line)["question"]["stem"] for line in lines[:300]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="</s>", pad_token="</s>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
    return model, tokenizer


def test_registry_matches_the_v1_leaderboard():
    shots = {name: (task.num_fewshot, task.metric) for name, task in LEADERBOARD_TASKS.items()}
    assert shots == {
        "arc_challenge": (25, "acc_norm"),
        "hellaswag": (10, "acc_norm"),
        "mmlu": (5, "acc"),
        "truthfulqa_mc2": (0, "acc"),  # lm-eval stores mc2 under "acc"
    }
    mmlu = get_leaderboard_task("mmlu")
    assert len(mmlu.subtasks) == 57 and len(mmlu.local_files) == 57 * 3
    upstream = {
        p.stem.removeprefix("mmlu_") for p in (lm_eval_tasks_dir() / "mmlu/default").glob("mmlu_*.yaml")
    }
    assert upstream == set(MMLU_SUBJECTS)
    for task in LEADERBOARD_TASKS.values():
        assert all((lm_eval_tasks_dir() / relative).is_file() for relative in task.upstream_yamls)
    with pytest.raises(KeyError, match="unknown leaderboard task 'arc'"):
        get_leaderboard_task("arc")


def test_local_tasks_load_offline_with_full_splits(data_dir: Path, task_cache: Path):
    manager, sources = task_manager_for(list(LEADERBOARD_TASKS.values()), data_dir, task_cache)
    assert sources == {
        "arc_challenge": "local",
        "hellaswag": "hub",
        "mmlu": "local",
        "truthfulqa_mc2": "local",
    }
    arc = manager.load(["arc_challenge"])["tasks"]["arc_challenge"]
    assert (len(arc.training_docs()), len(arc.validation_docs()), len(arc.test_docs())) == (1119, 299, 1172)
    truthfulqa = manager.load(["truthfulqa_mc2"])["tasks"]["truthfulqa_mc2"]
    assert len(truthfulqa.validation_docs()) == 817
    doc = truthfulqa.validation_docs()[0]
    assert doc["mc2_targets"]["labels"] == [1, 1, 1, 0, 0, 0]
    assert truthfulqa.doc_to_choice(doc)[0] == "Nothing in particular happens when you eat a pomegranate."
    mmlu = manager.load(["mmlu"])
    assert set(mmlu["groups"]) == {
        "mmlu",
        "mmlu_stem",
        "mmlu_other",
        "mmlu_social_sciences",
        "mmlu_humanities",
    }
    assert len(mmlu["tasks"]) == 57
    assert sum(len(task.test_docs()) for task in mmlu["tasks"].values()) == 14042
    assert all(len(task.fewshot_docs()) == 5 for task in mmlu["tasks"].values())
    algebra = mmlu["tasks"]["mmlu_abstract_algebra"]
    first = algebra.test_docs()[0]
    assert algebra.doc_to_text(first).endswith("\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:")
    assert algebra.doc_to_choice(first) == ["A", "B", "C", "D"] and algebra.doc_to_target(first) == 1
    # CRLF files: no carriage return reaches a prompt.
    physics = mmlu["tasks"]["mmlu_high_school_physics"]
    assert not any("\r" in physics.doc_to_text(d) for d in physics.test_docs())

    # Materialising again writes the same bytes and leaves the files untouched (datasets keeps its cache).
    arc_dir = task_cache / "arc_challenge"
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in arc_dir.rglob("*") if p.is_file()}
    assert materialize_local_task(get_leaderboard_task("arc_challenge"), data_dir, task_cache) == arc_dir
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in arc_dir.rglob("*") if p.is_file()}
    assert before == after
    config = (arc_dir / "arc_challenge.yaml").read_text()
    assert f"include: {lm_eval_tasks_dir() / 'arc/arc_challenge.yaml'}" in config


def test_arc_prompt_is_the_upstream_prompt(data_dir: Path, task_cache: Path, monkeypatch: pytest.MonkeyPatch):
    """The upstream arc_challenge task, fed the same rows as if from the Hub, builds the same 25-shot
    context, choices and target as our local task; and the prompt is built from the raw file's stem."""
    import datasets
    import lm_eval.api.task
    from lm_eval.tasks import TaskManager

    local_manager, _ = task_manager_for([get_leaderboard_task("arc_challenge")], data_dir, task_cache)
    local = local_manager.load(["arc_challenge"])["tasks"]["arc_challenge"]
    converted = task_cache / "arc_challenge" / "data"
    real_load_dataset = datasets.load_dataset

    def hub_stand_in(path, name=None, **kwargs):
        assert (path, name) == ("allenai/ai2_arc", "ARC-Challenge")
        splits = ("train", "validation", "test")
        return real_load_dataset("json", data_files={s: str(converted / f"{s}.jsonl") for s in splits})

    monkeypatch.setattr(lm_eval.api.task.datasets, "load_dataset", hub_stand_in)
    upstream_manager = TaskManager(include_path=[lm_eval_tasks_dir() / "arc"], include_defaults=False)
    upstream = upstream_manager.load(["arc_challenge"])["tasks"]["arc_challenge"]
    assert upstream.config.dataset_path == "allenai/ai2_arc" and local.config.dataset_path == "json"

    for task in (local, upstream):
        task.set_config(key="num_fewshot", value=25)
        task.set_fewshot_seed(seed=1234)
    for index in (0, 7):
        local_doc, upstream_doc = local.test_docs()[index], upstream.test_docs()[index]
        assert local.fewshot_context(local_doc, 25) == upstream.fewshot_context(upstream_doc, 25)
        assert local.doc_to_choice(local_doc) == upstream.doc_to_choice(upstream_doc)
        assert local.doc_to_target(local_doc) == upstream.doc_to_target(upstream_doc)

    raw = json.loads((data_dir / "leaderboard/arc_challenge/ARC-Challenge-Test.jsonl").open().readline())
    doc = local.test_docs()[0]
    context = local.fewshot_context(doc, 25)
    assert context.endswith(f"\n\nQuestion: {raw['question']['stem']}\nAnswer:")
    assert context.count("Question: ") == 26
    assert local.doc_to_choice(doc) == [choice["text"] for choice in raw["question"]["choices"]]
    assert local.doc_to_choice(doc)[local.doc_to_target(doc)] == "Planetary days will become shorter."


def test_tiny_llama_runs_arc_and_truthfulqa_and_resumes(
    tiny_llama, data_dir: Path, task_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    model, tokenizer = tiny_llama
    out = tmp_path / "leaderboard"
    tasks = ["arc_challenge", "truthfulqa_mc2", "hellaswag"]
    records = run_leaderboard(
        model, tokenizer, tasks, data_dir, out, limit=3, batch_size=4, seed=1234, task_cache=task_cache
    )
    assert sorted(p.name for p in out.glob("*.json")) == [f"{t}.json" for t in sorted(tasks)]
    for name in ("arc_challenge", "truthfulqa_mc2"):
        record = json.loads((out / f"{name}.json").read_text())
        assert record == records[name]
        assert set(record) >= CONTRACT_FIELDS
        assert record["status"] == "ok" and record["reason"] is None
        assert record["n"] == 3 and record["limit"] == 3 and record["comparable"] is False
        assert record["lm_eval_version"] == "0.4.13"
        assert record["data"]["source"] == "local"
        assert 0.0 <= record["value"] <= 100.0 and record["stderr"] >= 0.0
    arc, truthfulqa = records["arc_challenge"], records["truthfulqa_mc2"]
    assert (arc["num_fewshot"], arc["metric"]) == (25, "acc_norm")
    assert arc["value"] in (0.0, 100 / 3, 200 / 3, 100.0)  # acc_norm over 3 documents
    assert (truthfulqa["num_fewshot"], truthfulqa["metric"]) == (0, "mc2")
    assert 0.0 < truthfulqa["value"] < 100.0  # mc2 is a probability mass, not a 0/1 accuracy

    hellaswag = records["hellaswag"]
    assert set(hellaswag) >= CONTRACT_FIELDS
    assert hellaswag["status"] == "not run" and hellaswag["value"] is None
    assert "Rowan/hellaswag" in hellaswag["reason"] and "leaderboard/hellaswag/" in hellaswag["reason"]

    # A rerun reads the finished results back and evaluates nothing.
    import lm_eval

    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished task was evaluated again")

    monkeypatch.setattr(lm_eval, "simple_evaluate", must_not_run)
    again = run_leaderboard(
        model, tokenizer, tasks[:2], data_dir, out, limit=3, batch_size=4, task_cache=task_cache
    )
    assert again == {name: records[name] for name in tasks[:2]}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")} == stamps
    # ...but a full run is not satisfied by a smoke run's result.
    with pytest.raises(AssertionError, match="evaluated again"):
        run_leaderboard(model, tokenizer, ["arc_challenge"], data_dir, out, limit=None, task_cache=task_cache)


def test_hellaswag_runs_from_local_files_when_they_exist(tmp_path: Path):
    """HellaSwag's files are not in the shared data; given rowanz-format files, the task is local and the
    upstream process_docs builds its query. (Row: the first HellaSwag validation example.)"""
    row = {
        "ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.",
        "ctx_b": "he", "ctx": "A man is sitting on a roof. he", "split": "val", "split_type": "indomain",
        "label": 3, "source_id": "activitynet~v_-JhWjGDPHMY",
        "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                    "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
    }  # fmt: skip
    data_dir = tmp_path / "data"
    for relative in get_leaderboard_task("hellaswag").local_files:
        (data_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / relative).write_text(json.dumps(row) + "\n")
    manager, sources = task_manager_for([get_leaderboard_task("hellaswag")], data_dir, tmp_path / "cache")
    assert sources == {"hellaswag": "local"}
    task = manager.load(["hellaswag"])["tasks"]["hellaswag"]
    doc = task.validation_docs()[0]
    assert task.doc_to_text(doc) == "Roof shingle removal: A man is sitting on a roof. He"
    assert task.doc_to_choice(doc)[task.doc_to_target(doc)] == "starts pulling up roofing on a roof."

    (data_dir / "leaderboard/hellaswag/hellaswag_val.jsonl").write_text('{"ind": 1}\n')
    with pytest.raises(DataFormatError, match=r"hellaswag_val.jsonl:1: not a HellaSwag record"):
        materialize_local_task(get_leaderboard_task("hellaswag"), data_dir, tmp_path / "cache")


def test_mmlu_value_is_the_unweighted_subject_mean():
    """lm-eval weights MMLU subjects by size; the v1 leaderboard (and our `value`) does not."""
    mmlu = get_leaderboard_task("mmlu")
    sizes = {leaf: 100 for leaf in mmlu.subtasks} | {"mmlu_abstract_algebra": 1000}
    accuracy = {leaf: 0.5 for leaf in mmlu.subtasks} | {"mmlu_abstract_algebra": 0.1}
    results = {
        "results": {leaf: {"acc,none": accuracy[leaf], "acc_stderr,none": 0.05} for leaf in mmlu.subtasks}
        | {"mmlu": {"acc,none": sum(accuracy[t] * sizes[t] for t in sizes) / sum(sizes.values())}},
        "n-samples": {leaf: {"original": sizes[leaf], "effective": sizes[leaf]} for leaf in mmlu.subtasks},
    }
    record = leaderboard_record(mmlu, results, limit=None, lm_eval_version="0.4.13")
    assert record["value"] == pytest.approx(100 * (0.5 * 56 + 0.1) / 57)
    assert record["value_size_weighted"] == pytest.approx(100 * (50 * 56 + 100) / (100 * 56 + 1000))
    assert record["stderr"] == pytest.approx(100 * 0.05 * math.sqrt(57) / 57)
    assert record["n"] == 100 * 56 + 1000 and record["comparable"] is True
    assert record["subtasks"]["mmlu_abstract_algebra"] == {"value": 10.0, "stderr": 5.0, "n": 1000}


def test_cli_rejects_an_unknown_task_before_loading_a_model(capsys: pytest.CaptureFixture[str]):
    from robustft.cli import main

    code = main(["lm-eval", "--model", "no-such-model", "--tasks", "arc", "--out", "unused"])
    assert code == 2
    assert "unknown leaderboard task 'arc'" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.slow
def test_smollm2_arc_challenge_two_documents(data_dir: Path, task_cache: Path, tmp_path: Path):
    """The real SmolLM2-135M on 2 ARC-Challenge documents (25-shot; ~20-60 s each on a 2-core CPU, so CI
    scores only 2); prints the time per document."""
    try:
        from robustft.models import load_causal_lm
    except ImportError:
        pytest.skip("robustft.models.load_causal_lm has not landed yet (the SFT helper writes it)")
    started = time.perf_counter()
    model, tokenizer = load_causal_lm("smollm2-135m", dtype="fp32")
    loaded = time.perf_counter()
    record = run_leaderboard(
        model, tokenizer, ["arc_challenge"], data_dir, tmp_path, limit=2, batch_size=4, task_cache=task_cache
    )["arc_challenge"]
    assert record["status"] == "ok" and record["n"] == 2 and 0.0 <= record["value"] <= 100.0
    print(
        f"\nsmollm2-135m arc_challenge limit 2: load {loaded - started:.1f} s, "
        f"eval {record['runtime_s']:.1f} s ({record['seconds_per_doc']:.2f} s/doc), "
        f"acc_norm {record['value']:.1f}"
    )


def test_module_imports_nothing_heavy():
    import subprocess
    import sys

    heavy = "{'torch', 'transformers', 'lm_eval', 'datasets'}"
    code = f"import sys, robustft.evals.leaderboard; print(sorted({heavy} & set(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]", leaderboard.__name__
