"""Instruction data (robustft.data.instruct): the real Alpaca seed tasks and AlpacaEval prompts, templates,
malformed records named by file and line, the Hub fallback's error, and the held-out split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustft.data import DataFormatError, DataNotFoundError
from robustft.data.instruct import (
    ALPACA_PROMPT_INPUT,
    INSTRUCT_DATASETS,
    VICUNA_SYSTEM,
    alpaca_prompt,
    get_instruct_dataset,
    load_alpaca_eval,
    load_instruct_dataset,
    split_heldout,
    subsample,
    vicuna_prompt,
)
from tests.helpers import shared_data_dir


@pytest.fixture(scope="module")
def data_dir() -> Path:
    path = shared_data_dir()
    if not (path / "instruction" / "alpaca" / "seed_tasks.jsonl").is_file():
        pytest.skip(f"real instruction data not found under {path} (set ROBUSTFT_TEST_DATA)")
    return path


def test_registry_has_the_papers_datasets() -> None:
    assert {"alpaca", "alpaca_seed", "evol_instruct", "sharegpt", "open_platypus"} <= set(INSTRUCT_DATASETS)
    assert get_instruct_dataset("sharegpt").template == "vicuna"
    assert get_instruct_dataset("alpaca").hub_id == "tatsu-lab/alpaca"
    with pytest.raises(KeyError, match=r"unknown instruction dataset 'dolly'.*alpaca_seed"):
        get_instruct_dataset("dolly")


def test_alpaca_seed_tasks_are_read_with_the_alpaca_template(data_dir: Path) -> None:
    data = load_instruct_dataset("alpaca_seed", data_dir)
    assert len(data) == 175  # one instance per seed task in this release
    assert "seed_tasks.jsonl" in data.source
    first = data.examples[0]
    assert first.instruction.startswith("Is there anything I can eat for a breakfast")
    assert first.prompt == alpaca_prompt(first.instruction)  # empty input: the no-input template
    assert "### Input:" not in first.prompt and first.prompt.endswith("### Response:")
    assert first.completion.startswith("Yes, you can have 1 oatmeal banana protein shake")
    with_input = data.examples[1]
    assert with_input.input == "Night : Day :: Right : Left"
    assert with_input.prompt.endswith("### Input:\nNight : Day :: Right : Left\n\n### Response:")
    assert first.source.endswith("seed_tasks.jsonl:1") and with_input.source.endswith(":2")


def test_templates_match_the_neftune_code() -> None:
    # experiment_code/dataset.py (Stanford Alpaca's PROMPT_DICT): the response follows "### Response:".
    assert alpaca_prompt("Do X.", "some input") == ALPACA_PROMPT_INPUT.format(
        instruction="Do X.", input="some input"
    )
    assert alpaca_prompt("Do X.").startswith("Below is an instruction that describes a task. Write a")
    prompt = vicuna_prompt([("hi", "hello")], "how are you?")
    assert prompt == f"{VICUNA_SYSTEM} USER: hi ASSISTANT: hello</s> USER: how are you? ASSISTANT:"


def test_alpaca_eval_set(data_dir: Path) -> None:
    rows = load_alpaca_eval(data_dir)
    assert len(rows) == 805
    assert [row["id"] for row in rows[:3]] == [0, 1, 2]
    assert rows[0]["instruction"].startswith("What are the names of some famous actors")
    assert {row["generator"] for row in rows} == {"text_davinci_003"}
    assert {"helpful_base", "koala", "oasst", "selfinstruct", "vicuna"} <= {row["dataset"] for row in rows}


def _write_seed(tmp_path: Path, lines: list[str]) -> Path:
    directory = tmp_path / "instruction" / "alpaca"
    directory.mkdir(parents=True)
    path = directory / "seed_tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_jsonl_lines_are_named_by_file_and_line(tmp_path: Path) -> None:
    good = json.dumps({"instruction": "Say hi.", "instances": [{"input": "", "output": "Hi."}]})
    path = _write_seed(tmp_path, [good, "", '{"instruction": "broken", '])
    with pytest.raises(DataFormatError, match=f"{path}:3: not valid JSON"):
        load_instruct_dataset("alpaca_seed", tmp_path)
    path.write_text(good + "\n" + json.dumps({"instruction": "No output.", "instances": [{"input": ""}]}))
    with pytest.raises(DataFormatError, match=rf"{path}:2 instances\[0\]: field 'output' is missing"):
        load_instruct_dataset("alpaca_seed", tmp_path)
    path.write_text(json.dumps({"instruction": 3, "instances": []}))
    with pytest.raises(DataFormatError, match=f"{path}:1: field 'instruction' is not a string"):
        load_instruct_dataset("alpaca_seed", tmp_path)


def test_json_list_records_are_named_by_number(tmp_path: Path) -> None:
    directory = tmp_path / "instruction" / "open_platypus"
    directory.mkdir(parents=True)
    path = directory / "open_platypus.json"
    path.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c"}], indent=1))
    with pytest.raises(DataFormatError, match=f"{path} record 2: field 'output' is missing"):
        load_instruct_dataset("open_platypus", tmp_path)
    path.write_text('[\n{"instruction": "a",\n"output": }\n]')
    with pytest.raises(DataFormatError, match=f"{path}:3: not valid JSON"):
        load_instruct_dataset("open_platypus", tmp_path)
    path.write_text(json.dumps([{"instruction": "a", "input": "ctx", "output": "b"}]))
    (example,) = load_instruct_dataset("open_platypus", tmp_path).examples
    assert "### Input:\nctx" in example.prompt and example.completion == "b"


def test_missing_everywhere_names_the_local_path_and_the_hub(tmp_path: Path) -> None:
    # conftest runs the tests offline, so the Hub read fails at once.
    with pytest.raises(DataNotFoundError) as caught:
        load_instruct_dataset("evol_instruct", tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "instruction" / "evol_instruct" / "alpaca_evol_instruct_70k.json") in message
    assert "WizardLM/WizardLM_evol_instruct_70k" in message and "robustft prefetch" in message
    with pytest.raises(DataNotFoundError, match="no Hub copy"):
        load_instruct_dataset("alpaca_seed", tmp_path)
    with pytest.raises(DataNotFoundError, match=r"alpaca_eval\.jsonl"):
        load_alpaca_eval(tmp_path)


def test_heldout_split_is_deterministic_and_disjoint(data_dir: Path) -> None:
    data = load_instruct_dataset("alpaca_seed", data_dir)
    train, heldout = split_heldout(data, 25, seed=0)
    _, again_heldout = split_heldout(data, 25, seed=0)
    assert [e.prompt for e in heldout.examples] == [e.prompt for e in again_heldout.examples]
    assert len(heldout) == 25 and len(train) == 150
    assert not {e.instruction for e in train.examples} & {e.instruction for e in heldout.examples}
    _, other = split_heldout(data, 25, seed=1)
    assert [e.prompt for e in other.examples] != [e.prompt for e in heldout.examples]
    positions = [data.examples.index(e) for e in train.examples]
    assert positions == sorted(positions)  # file order kept
    assert split_heldout(data, 0, seed=0) == (data, None)
    with pytest.raises(ValueError, match="lower heldout_size"):
        split_heldout(data, 175, seed=0)
    small = subsample(train, 10, seed=0)
    assert len(small) == 10 and "random 10 of 150" in small.source


def _write_sharegpt(tmp_path: Path, turns: int, words: int) -> None:
    """One conversation of `turns` user/assistant pairs, each message `words` whitespace words long."""
    messages = []
    for turn in range(turns):
        messages.append({"from": "human", "value": " ".join(f"q{turn}w{k}" for k in range(words))})
        messages.append({"from": "gpt", "value": " ".join(f"a{turn}w{k}" for k in range(words))})
    directory = tmp_path / "instruction" / "sharegpt"
    directory.mkdir(parents=True)
    (directory / "sharegpt.jsonl").write_text(json.dumps({"conversations": messages}) + "\n")


def _context_turns(prompt: str) -> int:
    """How many earlier turn pairs a Vicuna prompt carries (each closes with the EOS after its reply)."""
    return prompt.count("</s>")


@pytest.mark.parametrize(("chunk_tokens", "pairs_per_chunk"), [(512, 2), (1024, 4), (100, 1)])
def test_sharegpt_chunk_length_sets_how_many_turns_share_a_context(
    tmp_path: Path, chunk_tokens: int, pairs_per_chunk: int
) -> None:
    """Eight turn pairs of 220 words (system prompt: 23 words): a chunk of 512 holds 2 pairs, one of 1,024
    holds 4, and a pair larger than the chunk still makes an example, alone in its context."""
    _write_sharegpt(tmp_path, turns=8, words=110)
    system = len(VICUNA_SYSTEM.split())
    assert system + 2 * 220 <= 512 < system + 3 * 220 and system + 4 * 220 <= 1024 < system + 5 * 220
    data = load_instruct_dataset("sharegpt", tmp_path, chunk_tokens=chunk_tokens)
    assert [e.completion.split()[0] for e in data.examples] == [f"a{t}w0" for t in range(8)]
    assert [_context_turns(e.prompt) for e in data.examples] == [t % pairs_per_chunk for t in range(8)]
    # Every assistant reply is trained on once, whatever the chunk length.
    assert all(e.prompt.startswith(VICUNA_SYSTEM) for e in data.examples)


def test_sharegpt_chunk_length_is_the_default_512(tmp_path: Path) -> None:
    _write_sharegpt(tmp_path, turns=4, words=100)
    default = load_instruct_dataset("sharegpt", tmp_path)
    assert [e.prompt for e in default.examples] == [
        e.prompt for e in load_instruct_dataset("sharegpt", tmp_path, chunk_tokens=512).examples
    ]
