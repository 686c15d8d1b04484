"""Instruction-tuning data (NEFTune track): a registry of SFT datasets, their prompt templates, the
AlpacaEval prompts, and a deterministic train/held-out split.

Every dataset becomes a list of `InstructExample`s, each a (prompt, completion) pair: the SFT trainer
puts the loss on the completion only, as the NEFTune code does (`label[:source_len] = IGNORE_INDEX`).
Local files under `<data_dir>/instruction/<local_dir>/` are read first (JSON list or JSON lines), else
the Hub; a malformed record stops the load with its file and line (JSON lists: record number).

Templates (NEFTune Sec. 3.2): the Alpaca prompt for every dataset but ShareGPT, which uses Vicuna's
system prompt. The Alpaca prompt ends in "### Response:" and the completion follows without a separator,
exactly as in the NEFTune/Stanford Alpaca code (`source + target`, target = output + eos).

ShareGPT (multi-turn): the paper splits conversations into 512-token chunks (App. A.1), as FastChat's
`split_long_conversation` does at turn boundaries, and trains Vicuna-style on the assistant turns only.
A prompt/completion pair has one completion, so we flatten each chunk into one example per assistant
turn: prompt = system prompt + the chunk's turns before it (ending in "ASSISTANT:"), completion = that
reply. Every assistant token is trained on exactly once and no user token is; a chunk closes before the
turn pair that would take it past `chunk_tokens` (counted by `count_tokens`, by default whitespace words).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustft.errors import DataFormatError, DataNotFoundError

ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
# FastChat's vicuna_v1.1 conversation template: system, then "USER: ... ASSISTANT: ...</s>" turns.
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
SHAREGPT_CHUNK_TOKENS = 512  # NEFTune App. A.1


def alpaca_prompt(instruction: str, input_text: str = "") -> str:
    """The Alpaca prompt, with the Input block only when there is an input (as the Alpaca code does)."""
    if input_text:
        return ALPACA_PROMPT_INPUT.format(instruction=instruction, input=input_text)
    return ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)


def vicuna_prompt(turns: list[tuple[str, str]], user_message: str) -> str:
    """Vicuna v1.1 prompt: earlier (user, assistant) turns, then the user message the reply answers.
    Earlier replies end with "</s>" in FastChat; we write the literal separator text the same way."""
    parts = [VICUNA_SYSTEM]
    for user, assistant in turns:
        parts.append(f" USER: {user} ASSISTANT: {assistant}</s>")
    parts.append(f" USER: {user_message} ASSISTANT:")
    return "".join(parts)


@dataclass
class InstructExample:
    """One SFT example: `prompt` (template applied) and `completion` (the response the loss is on)."""

    prompt: str
    completion: str
    instruction: str
    input: str = ""
    source: str = ""  # file:line (or Hub id:row) it came from, for error messages and provenance

    def to_dict(self) -> dict[str, str]:
        return {"prompt": self.prompt, "completion": self.completion, "instruction": self.instruction}


@dataclass
class InstructData:
    examples: list[InstructExample]
    source: str  # where the examples came from, in words (recorded in run.json)

    def __len__(self) -> int:
        return len(self.examples)


# record -> examples; `where` names the record for errors.
RecordParser = Callable[[dict[str, Any], str], list[InstructExample]]


def _text(record: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = record.get(key, None if required else "")
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        missing = "missing" if key not in record else f"not a string ({type(value).__name__})"
        raise DataFormatError(f"{where}: field {key!r} is {missing}; keys: {sorted(record)}")
    return value


def parse_alpaca(record: dict[str, Any], where: str) -> list[InstructExample]:
    """{instruction, input?, output} (Alpaca, Open-Platypus, Evol-Instruct)."""
    instruction = _text(record, "instruction", where)
    input_text = _text(record, "input", where, required=False)
    output = _text(record, "output", where)
    return [InstructExample(alpaca_prompt(instruction, input_text), output, instruction, input_text, where)]


def parse_seed_task(record: dict[str, Any], where: str) -> list[InstructExample]:
    """Self-Instruct seed task: {instruction, instances: [{input, output}, ...]}, one example per instance."""
    instruction = _text(record, "instruction", where)
    instances = record.get("instances")
    if not isinstance(instances, list) or not instances:
        raise DataFormatError(f"{where}: field 'instances' must be a non-empty list, got {instances!r:.80}")
    examples = []
    for k, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise DataFormatError(f"{where}: instances[{k}] is not an object")
        input_text = _text(instance, "input", f"{where} instances[{k}]", required=False)
        output = _text(instance, "output", f"{where} instances[{k}]")
        examples.append(
            InstructExample(alpaca_prompt(instruction, input_text), output, instruction, input_text, where)
        )
    return examples


_SPEAKERS = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant"}


def parse_sharegpt(
    record: dict[str, Any],
    where: str,
    count_tokens: Callable[[str], int] | None = None,
    chunk_tokens: int = SHAREGPT_CHUNK_TOKENS,
) -> list[InstructExample]:
    """Vicuna-format conversation {conversations: [{from: human|gpt, value}, ...]} (module docstring)."""
    count = count_tokens or (lambda text: len(text.split()))
    messages = record.get("conversations")
    if not isinstance(messages, list):
        raise DataFormatError(f"{where}: field 'conversations' must be a list, keys: {sorted(record)}")
    turns: list[tuple[str, str]] = []
    for k, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("value"), str):
            raise DataFormatError(f"{where}: conversations[{k}] needs a string 'value'")
        role = _SPEAKERS.get(str(message.get("from", "")).lower())
        if role is None:
            raise DataFormatError(
                f"{where}: conversations[{k}] has speaker {message.get('from')!r}; known: {sorted(_SPEAKERS)}"
            )
        if role == "user":
            turns.append((message["value"], ""))
        elif turns and not turns[-1][1]:
            turns[-1] = (turns[-1][0], message["value"])
        # An assistant message with no user message before it (ShareGPT starts some with one) has no
        # prompt to answer: skipped, like FastChat skips a conversation's leading assistant turn.
    examples: list[InstructExample] = []
    chunk: list[tuple[str, str]] = []
    used = count(VICUNA_SYSTEM)
    for user, assistant in turns:
        if not assistant:
            continue  # a trailing user message without a reply
        size = count(user) + count(assistant)
        if chunk and used + size > chunk_tokens:
            chunk, used = [], count(VICUNA_SYSTEM)  # a new chunk starts its own context
        prompt = vicuna_prompt(chunk, user)
        examples.append(InstructExample(prompt, assistant, user, "", f"{where} turn {len(chunk) + 1}"))
        chunk.append((user, assistant))
        used += size
    return examples


@dataclass(frozen=True)
class InstructDatasetSpec:
    """One SFT dataset: local file names under `<data_dir>/instruction/<local_dir>/`, tried in order,
    then the Hub (`hub_id`, optionally `hub_files` inside the repo)."""

    key: str
    paper_name: str
    local_dir: str
    local_files: tuple[str, ...]
    hub_id: str
    parse: RecordParser
    template: str = "alpaca"  # "alpaca" | "vicuna"
    hub_files: tuple[str, ...] = ()
    description: str = ""
    hub_split: str = "train"

    def local_paths(self, data_dir: str | Path) -> list[Path]:
        return [Path(data_dir) / "instruction" / self.local_dir / name for name in self.local_files]


INSTRUCT_DATASETS: dict[str, InstructDatasetSpec] = {}


def register_instruct_dataset(spec: InstructDatasetSpec) -> InstructDatasetSpec:
    INSTRUCT_DATASETS[spec.key] = spec
    return spec


register_instruct_dataset(
    InstructDatasetSpec(
        key="alpaca",
        paper_name="Alpaca",
        local_dir="alpaca",
        local_files=("alpaca_data.json", "alpaca_data.jsonl"),
        hub_id="tatsu-lab/alpaca",
        parse=parse_alpaca,
        description="Stanford Alpaca, 52,002 instructions (text-davinci-003 outputs)",
    )
)
register_instruct_dataset(
    InstructDatasetSpec(
        key="alpaca_seed",
        paper_name="Alpaca seed tasks",
        local_dir="alpaca",
        local_files=("seed_tasks.jsonl",),
        hub_id="",  # ships with the stanford_alpaca GitHub repo only
        parse=parse_seed_task,
        description="the 175 human-written Self-Instruct seed tasks Alpaca was generated from (CPU stand-in)",
    )
)
register_instruct_dataset(
    InstructDatasetSpec(
        key="evol_instruct",
        paper_name="Evol-Instruct",
        local_dir="evol_instruct",
        local_files=("alpaca_evol_instruct_70k.json", "evol_instruct.json", "evol_instruct.jsonl"),
        hub_id="WizardLM/WizardLM_evol_instruct_70k",
        parse=parse_alpaca,
        description="WizardLM Evol-Instruct, 70k",
    )
)
register_instruct_dataset(
    InstructDatasetSpec(
        key="sharegpt",
        paper_name="ShareGPT",
        local_dir="sharegpt",
        local_files=("ShareGPT_V3_unfiltered_cleaned_split.json", "sharegpt.json", "sharegpt.jsonl"),
        hub_id="anon8231489123/ShareGPT_Vicuna_unfiltered",
        hub_files=("ShareGPT_V3_unfiltered_cleaned_split.json",),
        parse=parse_sharegpt,
        template="vicuna",
        description="ShareGPT conversations in Vicuna format, chunked at turn boundaries (module docstring)",
    )
)
register_instruct_dataset(
    InstructDatasetSpec(
        key="open_platypus",
        paper_name="OpenPlatypus",
        local_dir="open_platypus",
        local_files=("open_platypus.json", "open_platypus.jsonl"),
        hub_id="garage-bAInd/Open-Platypus",
        parse=parse_alpaca,
        description="Open-Platypus, 25k STEM and logic instructions",
    )
)


def get_instruct_dataset(key: str) -> InstructDatasetSpec:
    try:
        return INSTRUCT_DATASETS[key]
    except KeyError:
        known = ", ".join(sorted(INSTRUCT_DATASETS))
        raise KeyError(f"unknown instruction dataset {key!r}; known: {known}") from None


def read_json_records(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    """(record, "file:line") for a JSON-lines file, or (record, "file record N") for a JSON list."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        for number, record in enumerate(records, start=1):
            where = f"{path} record {number}"
            if not isinstance(record, dict):
                raise DataFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
            yield record, where
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{where}: not valid JSON ({err.msg}): {line[:80]!r}") from None
        if not isinstance(record, dict):
            raise DataFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
        yield record, where


def _read_hub(spec: InstructDatasetSpec, cache_dir: str | None) -> Iterator[tuple[dict[str, Any], str]]:
    import datasets

    kwargs: dict[str, Any] = {"split": spec.hub_split, "cache_dir": cache_dir}
    if spec.hub_files:
        kwargs["data_files"] = list(spec.hub_files)
    dataset = datasets.load_dataset(spec.hub_id, **kwargs)
    for number, record in enumerate(dataset):
        yield record, f"{spec.hub_id} row {number}"


def load_instruct_dataset(
    key: str,
    data_dir: str | Path,
    cache_dir: str | None = None,
    count_tokens: Callable[[str], int] | None = None,
    chunk_tokens: int = SHAREGPT_CHUNK_TOKENS,
) -> InstructData:
    """Every example of a dataset: the first local file that exists, else the Hub, else one error naming
    both. `count_tokens` sizes ShareGPT's chunks (the run's tokenizer; default whitespace words), of at
    most `chunk_tokens` each (NEFTune Table 13 compares 512 and 1,024); other datasets ignore both."""
    spec = get_instruct_dataset(key)
    parse = spec.parse
    if parse is parse_sharegpt:

        def parse(record: dict[str, Any], where: str) -> list[InstructExample]:
            return parse_sharegpt(record, where, count_tokens=count_tokens, chunk_tokens=chunk_tokens)

    local = next((path for path in spec.local_paths(data_dir) if path.is_file()), None)
    if local is not None:
        records, source = read_json_records(local), str(local)
    elif spec.hub_id:
        records, source = _read_hub_or_fail(spec, data_dir, cache_dir), f"Hub {spec.hub_id}"
    else:
        raise DataNotFoundError(
            f"instruction dataset {key!r}: no local file ({', '.join(map(str, spec.local_paths(data_dir)))}) "
            "and it has no Hub copy"
        )
    examples = [example for record, where in records for example in parse(record, where)]
    if not examples:
        raise DataFormatError(f"instruction dataset {key!r}: {source} holds no examples")
    return InstructData(examples, f"{source} ({len(examples)} examples)")


def _read_hub_or_fail(
    spec: InstructDatasetSpec, data_dir: str | Path, cache_dir: str | None
) -> Iterator[tuple[dict[str, Any], str]]:
    try:
        records = list(_read_hub(spec, cache_dir))
    except Exception as err:  # datasets raises many types for "not there / offline"
        from robustft.offline import prefetch_hint

        local = ", ".join(str(p) for p in spec.local_paths(data_dir))
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise DataNotFoundError(
            f"instruction dataset {spec.key!r}: no local file ({local}) and the Hub dataset {spec.hub_id} "
            f"could not be read ({type(err).__name__}: {first_line}). "
            + prefetch_hint(data_dir=str(data_dir), cache_dir=cache_dir)
        ) from err
    yield from records


def split_heldout(data: InstructData, size: int, seed: int) -> tuple[InstructData, InstructData | None]:
    """(train, held-out): `size` examples drawn at random (fixed by `seed`) are held out, the rest kept in
    file order. Examples that share an instruction stay on one side (seed tasks and ShareGPT turns would
    otherwise leak their instruction into the held-out set)."""
    if size <= 0:
        return data, None
    import numpy as np

    groups: dict[str, list[int]] = {}
    for index, example in enumerate(data.examples):
        groups.setdefault(example.instruction, []).append(index)
    if size >= len(data.examples) or len(groups) < 2:
        raise ValueError(
            f"cannot hold out {size} of {len(data.examples)} examples ({len(groups)} distinct instructions) "
            f"from {data.source}: lower heldout_size"
        )
    order = np.random.default_rng(seed).permutation(len(groups))
    keys = list(groups)
    held: set[int] = set()
    for g in order:
        if len(held) >= size:
            break
        held.update(groups[keys[g]])
    train = [e for i, e in enumerate(data.examples) if i not in held]
    heldout = [e for i, e in enumerate(data.examples) if i in held]
    if not train:
        raise ValueError(f"holding out {size} examples leaves no training data from {data.source}")
    note = f"held out {len(heldout)} (data_seed={seed})"
    return (
        InstructData(train, f"{data.source}, minus {note}"),
        InstructData(heldout, f"{data.source}, {note}"),
    )


def subsample(data: InstructData, limit: int | None, seed: int) -> InstructData:
    """At most `limit` examples, drawn at random (fixed by `seed`), in file order."""
    if limit is None or limit >= len(data):
        return data
    import numpy as np

    keep = np.sort(np.random.default_rng(seed).choice(len(data), size=limit, replace=False))
    return InstructData(
        [data.examples[i] for i in keep], f"{data.source} (random {limit} of {len(data)}, data_seed={seed})"
    )


ALPACA_EVAL_FIELDS = ("instruction", "output", "generator", "dataset")


def load_alpaca_eval(data_dir: str | Path) -> list[dict[str, Any]]:
    """AlpacaEval's 805 prompts, `<data_dir>/alpaca_eval/alpaca_eval.jsonl`: {"id" (row number),
    "instruction", "output" (the text-davinci-003 reference), "generator", "dataset"}."""
    path = Path(data_dir) / "alpaca_eval" / "alpaca_eval.jsonl"
    if not path.is_file():
        raise DataNotFoundError(
            f"AlpacaEval prompts not found at {path} "
            "(the tatsu-lab/alpaca_eval 'alpaca_eval' set as JSON lines)"
        )
    rows = []
    for record, where in read_json_records(path):
        row = {"id": len(rows)}
        for key in ALPACA_EVAL_FIELDS:
            row[key] = _text(record, key, where)
        rows.append(row)
    return rows
