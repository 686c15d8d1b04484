"""Greedy generation on a tiny random Llama: determinism, batch = single under left padding, prompt overflow,
resume after a partial file."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from robustft.evals.generation import (  # noqa: E402
    GenerationSettings,
    Prompt,
    _UnpaddedRepetitionPenalty,
    fit_prompt,
    generate_to_jsonl,
    summary_path,
)
from robustft.train.config import RunError  # noqa: E402

CORPUS = [
    "Give three tips for staying healthy.",
    "Eat a balanced diet, exercise regularly and sleep well.",
    "Write a short poem about the sea and the sky.",
    "Explain why the sky is blue in simple words for a child.",
    "List the planets of the solar system in order from the sun.",
] * 20
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def tiny_tokenizer():
    """A byte-level BPE trained on a few sentences (any text round-trips), with pad = EOS as for Llama."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_llama(tokenizer, seed: int = 0, positions: int = 256):
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(config)
        # Make EOS a likely token, so some prompts stop early and padding matters
        with torch.no_grad():
            model.lm_head.weight[tokenizer.eos_token_id] *= 4
    return model.eval()


@pytest.fixture(scope="module")
def tiny():
    tokenizer = tiny_tokenizer()
    return tiny_llama(tokenizer), tokenizer


PROMPTS = [
    Prompt(id=i, fields={"instruction": text}, extra={"dataset": "test"})
    for i, text in enumerate(
        [
            "Give three tips for staying healthy.",
            "Write a poem.",
            "Explain why the sky is blue in simple words for a child, with an example about the sea.",
            "List the planets.",
            "Eat well?",
            "Write a short poem about the sea and the sky and the sun.",
        ]
    )
]


def read(path):
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


def run(tiny, path, prompts=PROMPTS, **settings):
    model, tokenizer = tiny
    options = {"max_new_tokens": 12, "batch_size": 1, **settings}
    return generate_to_jsonl(
        model, tokenizer, prompts, path, settings=GenerationSettings(**options), generator="tiny"
    )


def test_greedy_is_deterministic_and_batch_equals_single(tiny, tmp_path):
    run(tiny, tmp_path / "a.jsonl")
    run(tiny, tmp_path / "b.jsonl")
    summary = run(tiny, tmp_path / "batched.jsonl", batch_size=4)
    single, again, batched = (read(tmp_path / name) for name in ("a.jsonl", "b.jsonl", "batched.jsonl"))
    assert single == again
    assert {i: r["output"] for i, r in batched.items()} == {i: r["output"] for i, r in single.items()}
    assert {i: r["output_tokens"] for i, r in batched.items()} == {
        i: r["output_tokens"] for i, r in single.items()
    }
    stopped = [r for r in single.values() if not r["hit_max_new_tokens"]]
    assert stopped and len(stopped) < len(single), "want prompts that stop early and ones that do not"
    record = single[0]
    assert record["instruction"] == PROMPTS[0].fields["instruction"] and record["dataset"] == "test"
    assert record["generator"] == "tiny" and record["truncated"] is False and record["prompt_tokens"] > 0
    assert summary["n"] == summary["n_expected"] == 6 and summary["complete"] and summary["n_truncated"] == 0
    assert (
        summary["settings"]["repetition_penalty"] == 1.2
        and summary["settings"]["prompt_format"] == "chat_template"
    )
    assert json.loads(summary_path(tmp_path / "batched.jsonl").read_text())["n"] == 6


def test_repetition_penalty_skips_left_padding():
    penalty = _UnpaddedRepetitionPenalty(2.0, pad_lengths=[2, 0])
    input_ids = torch.tensor([[0, 0, 1, 2], [0, 3, 3, 1]])  # id 0 is padding in row 0 only
    scores = torch.tensor([[4.0, 4.0, -4.0, 4.0], [4.0, 4.0, 4.0, 4.0]])
    out = penalty(input_ids, scores)
    assert out.tolist() == [[4.0, 2.0, -8.0, 4.0], [2.0, 2.0, 4.0, 2.0]]
    processor = transformers.RepetitionPenaltyLogitsProcessor(2.0)  # same as transformers' without padding
    unpadded = _UnpaddedRepetitionPenalty(2.0, pad_lengths=[0])
    assert torch.equal(
        unpadded(input_ids[1:], scores[1:].clone()), processor(input_ids[1:], scores[1:].clone())
    )


def test_overflow_truncates_to_the_end_and_counts(tiny, tmp_path):
    long = Prompt(id="long", fields={"instruction": "Write a short poem about the sea and the sky. " * 6})
    summary = run(
        tiny, tmp_path / "g.jsonl", prompts=[*PROMPTS[:2], long], context_length=64, max_new_tokens=8
    )
    rows = read(tmp_path / "g.jsonl")
    assert rows["long"]["truncated"] is True and rows["long"]["prompt_tokens"] > 100
    assert rows[0]["truncated"] is False
    assert summary["n_truncated"] == 1 and summary["settings"]["context_length"] == 64
    # the end is kept: it holds the template's response cue
    assert fit_prompt("x", list(range(10)), 4, "truncate") == ([6, 7, 8, 9], True)
    assert fit_prompt("x", list(range(4)), 4, "fail") == ([0, 1, 2, 3], False)

    with pytest.raises(RunError, match=r"prompt 'long' has \d+ tokens but only 56 fit"):
        run(
            tiny,
            tmp_path / "f.jsonl",
            prompts=[long],
            context_length=64,
            max_new_tokens=8,
            prompt_overflow="fail",
        )
    assert not (tmp_path / "f.jsonl").exists()


def test_resume_after_a_partial_file(tiny, tmp_path, monkeypatch):
    full = tmp_path / "full.jsonl"
    run(tiny, full, batch_size=2)
    expected = read(full)

    partial = tmp_path / "partial.jsonl"
    lines = full.read_text().splitlines(keepends=True)
    partial.write_text("".join(lines[:2]) + lines[2][:25])  # two whole records and a line cut by a kill
    calls = []
    import robustft.evals.generation as generation

    real = generation.generate_batch
    monkeypatch.setattr(
        generation, "generate_batch", lambda m, t, batch, s: calls.append(len(batch)) or real(m, t, batch, s)
    )
    summary = run(tiny, partial, batch_size=2)
    assert sum(calls) == 4, "only the 4 prompts not yet in the file are generated"
    resumed = read(partial)
    assert resumed == expected and summary["complete"]
    assert partial.read_text().splitlines()[:2] == [line.rstrip("\n") for line in lines[:2]]

    calls.clear()
    run(tiny, partial, batch_size=3)  # batch size may change; nothing left to do
    assert calls == []
    with pytest.raises(RunError, match=r"max_new_tokens: 12 -> 13"):
        run(tiny, partial, max_new_tokens=13)


def test_settings_are_checked(tiny, tmp_path):
    with pytest.raises(RunError, match="prompt_overflow"):
        run(tiny, tmp_path / "x.jsonl", prompt_overflow="drop")
    with pytest.raises(RunError, match="leaves no room"):
        run(tiny, tmp_path / "x.jsonl", context_length=10, max_new_tokens=10)
    duplicate = [PROMPTS[0], PROMPTS[0]]
    with pytest.raises(RunError, match="not unique"):
        run(tiny, tmp_path / "x.jsonl", prompts=duplicate)


def test_prompt_template_and_own_text(tiny, tmp_path):
    model, tokenizer = tiny
    formatter = lambda fields: f"### Instruction:\n{fields['instruction']}\n\n### Response:"  # noqa: E731
    own = Prompt(
        id=9, fields={"instruction": "ignored"}, text="### Instruction:\nList the planets.\n\n### Response:"
    )
    outputs = {}
    for batch_size in (1, 3):
        path = tmp_path / f"t{batch_size}.jsonl"
        summary = generate_to_jsonl(
            model,
            tokenizer,
            [PROMPTS[3], own, PROMPTS[2]],
            path,
            settings=GenerationSettings(max_new_tokens=6, batch_size=batch_size),
            generator="tiny",
            formatter=formatter,
            prompt_format="alpaca",
        )
        outputs[batch_size] = read(path)
    rows = outputs[1]
    # the same text through the formatter and as the example's own prompt gives the same output
    assert rows[3]["output"] == rows[9]["output"] and rows[9]["instruction"] == "ignored"
    assert outputs[3] == rows  # padded batch (no EOS in this template's prompt) = one at a time
    assert summary["settings"]["prompt_format"] == "alpaca"


def test_train_prompts_come_from_the_runs_training_set(tiny, tmp_path):
    from robustft.evals.generation import sample_train_prompts, sft_training_examples
    from robustft.train.sft import SFTRunSpec, SFTSettings, load_sft_data
    from tests.helpers import shared_data_dir

    data_dir = shared_data_dir()
    if not (data_dir / "instruction" / "alpaca" / "seed_tasks.jsonl").exists():
        pytest.skip(f"seed tasks not found under {data_dir}")
    spec = SFTRunSpec(
        model="smollm2-135m",
        dataset="alpaca_seed",
        method="finetune",
        seed=0,
        data_dir=str(data_dir),
        sft=SFTSettings(max_train_samples=40, heldout_size=16),
    )
    (tmp_path / "run.json").write_text(json.dumps({"spec": {**asdict(spec), "sft": asdict(spec.sft)}}))
    _, tokenizer = tiny
    dataset, examples = sft_training_examples(tmp_path, tokenizer)
    train, _, heldout = load_sft_data(spec)
    assert dataset == "alpaca_seed" and [e.prompt for e in examples] == [e.prompt for e in train.examples]
    prompts = sample_train_prompts(examples, dataset, max_prompts=10, seed=3)
    assert len(prompts) == 10 and prompts == sample_train_prompts(examples, dataset, max_prompts=10, seed=3)
    held = {e.instruction for e in heldout.examples}
    for prompt in prompts:
        example = examples[prompt.id]
        assert prompt.text == example.prompt and prompt.extra["reference"] == example.completion
        assert prompt.fields["instruction"] not in held
    with pytest.raises(RunError, match=r"run\.json"):
        sft_training_examples(tmp_path / "missing", tokenizer)


def test_generations_of_another_model_are_set_aside_not_mixed(tiny, tmp_path):
    out = tmp_path / "alpaca_eval.jsonl"
    run(tiny, out)
    old = out.read_text()
    model, tokenizer = tiny
    settings = GenerationSettings(max_new_tokens=12, batch_size=1)
    summary = generate_to_jsonl(model, tokenizer, PROMPTS, out, settings=settings, generator="retrained")
    assert summary["complete"] and {r["generator"] for r in read(out).values()} == {"retrained"}
    (aside,) = tmp_path.glob("alpaca_eval.stale-*.jsonl")
    assert aside.read_text() == old  # nothing generated so far is lost


# ------------------------------------------------------------------------------------------ variants


def test_min_new_tokens_blocks_every_stop_until_then(tiny, tmp_path):
    plain = read_summary_and_rows(run(tiny, tmp_path / "plain.jsonl"), tmp_path / "plain.jsonl")
    forced = read_summary_and_rows(
        run(tiny, tmp_path / "forced.jsonl", min_new_tokens=8), tmp_path / "forced.jsonl"
    )
    assert min(r["output_tokens"] for r in plain[1].values()) < 8  # some answers stop early unforced
    assert all(r["output_tokens"] >= 8 for r in forced[1].values())
    assert forced[0]["settings"]["min_new_tokens"] == 8
    # The plain summary lists no variant field: its settings are what they were before variants existed.
    assert not {"min_new_tokens", "system_prompt", "do_sample", "sampling_seed"} & set(plain[0]["settings"])


def read_summary_and_rows(summary, path):
    return summary, read(path)


def test_sampling_is_seeded_per_batch_and_survives_a_resume(tiny, tmp_path):
    sampled = {"do_sample": True, "top_p": 0.9, "temperature": 1.5, "batch_size": 2}
    summary = run(tiny, tmp_path / "a.jsonl", **sampled)
    run(tiny, tmp_path / "b.jsonl", **sampled)
    run(tiny, tmp_path / "c.jsonl", **sampled, sampling_seed=1)
    run(tiny, tmp_path / "greedy.jsonl", batch_size=2)
    a, b, c, greedy = (read(tmp_path / f"{name}.jsonl") for name in ("a", "b", "c", "greedy"))
    outputs = lambda rows: {i: r["output"] for i, r in rows.items()}  # noqa: E731
    assert outputs(a) == outputs(b)
    assert outputs(a) != outputs(c) and outputs(a) != outputs(greedy)
    assert {k: summary["settings"][k] for k in ("do_sample", "top_p", "temperature", "sampling_seed")} == {
        "do_sample": True,
        "top_p": 0.9,
        "temperature": 1.5,
        "sampling_seed": 0,
    }
    # A killed job resumes with whole batches of the same prompts: the same draws as an uninterrupted run.
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join((tmp_path / "a.jsonl").read_text().splitlines(keepends=True)[:2]))
    summary_path(tmp_path / "a.jsonl").replace(summary_path(partial))
    run(tiny, partial, **sampled)
    assert outputs(read(partial)) == outputs(a)
    with pytest.raises(RunError, match=r"sampling_seed: 0 -> 1"):
        run(tiny, partial, **sampled, sampling_seed=1)


def test_a_system_prompt_goes_after_the_templates_system_part(tiny):
    from robustft.data.instruct import VICUNA_SYSTEM
    from robustft.evals.generation import encode_prompt, template_formatter, with_system_prompt

    fields = {"instruction": "List the planets.", "input": "Inner ones only."}
    alpaca = template_formatter("alpaca", "Write a long response.")(fields)
    assert alpaca.startswith("Below is an instruction")
    assert "the request. Write a long response.\n\n### Instruction:\nList the planets." in alpaca
    assert alpaca.endswith("### Input:\nInner ones only.\n\n### Response:")
    assert template_formatter("alpaca")(fields) == alpaca.replace(" Write a long response.", "")
    vicuna = template_formatter("vicuna", "Be thorough.")({"instruction": "Hi"})
    assert vicuna == f"{VICUNA_SYSTEM} Be thorough. USER: Hi ASSISTANT:"
    with pytest.raises(RunError, match="no system part"):
        with_system_prompt("### Response:", "x")
    _, tokenizer = tiny
    ids = encode_prompt(tokenizer, PROMPTS[1], None, "Be brief.")
    assert tokenizer.decode(ids).startswith("<s>system\nBe brief.</s>\n<s>user\nWrite a poem.")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"top_p": 0.5}, "need do_sample"),
        ({"do_sample": True, "top_p": 1.5}, "top_p"),
        ({"do_sample": True, "temperature": 0}, "temperature"),
        ({"min_new_tokens": 12}, "below max_new_tokens"),
    ],
)
def test_variant_settings_are_checked(tiny, tmp_path, settings, named):
    from robustft.evals.generation import variant_error

    assert named in variant_error(settings, 12)
    with pytest.raises(RunError, match=named):
        run(tiny, tmp_path / "x.jsonl", **settings)


def test_a_variant_folder_is_named_by_its_settings():
    from robustft.evals.generation import batch_seed, variant_dir_name

    name = variant_dir_name("long", {"system_prompt": "Write a long response."})
    assert name.startswith("long-") and len(name) == len("long-") + 8
    assert name == variant_dir_name("long", {"system_prompt": "Write a long response."})
    assert name != variant_dir_name("long", {"system_prompt": "Write a longer response."})
    assert batch_seed(0, [1, 2]) == batch_seed(0, ["1", "2"]) != batch_seed(1, [1, 2])
