"""Batched greedy generation on instruction prompts (NEFTune: greedy decoding, repetition penalty 1.2).

`generate_to_jsonl` appends one JSON line per prompt to the output file after every batch, and a rerun
skips the ids already there, so a killed job loses at most the batch in flight. Prompts are generated
longest first (an out-of-memory error shows up in the first batch, and similar lengths share a batch so
little compute goes to padding); the file is in that order, readers key on "id".

Batches are left-padded. Two details keep a prompt's output independent of its batch:
- the repetition penalty skips the padding. transformers' processor penalises every id in input_ids,
  padding included, and our pad token is usually EOS, so a padded prompt would be pushed away from
  stopping while the same prompt alone would not;
- position ids start at each prompt's first real token (transformers' generate derives them from the
  attention mask).

A prompt that does not fit the context (model positions minus max_new_tokens) is, with
`prompt_overflow: truncate`, cut to its LAST tokens: the end holds the template's response cue ("###
Response:" or the assistant turn header), without which the model would continue the instruction instead
of answering it; the record says `truncated: true` and `prompt_tokens` keeps the original length. With
`prompt_overflow: fail` such a prompt stops the run with an error naming its id and both lengths.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from robustft.errors import RunError
from robustft.io import write_json_atomic

logger = logging.getLogger(__name__)


OVERFLOW_POLICIES = ("truncate", "fail")
# Settings that change what is generated: a resumed run must use the same ones (batch size does not).
RESUME_KEYS = (
    "generator",
    "prompt_format",
    "max_new_tokens",
    "repetition_penalty",
    "prompt_overflow",
    "context_length",
)


@dataclass
class GenerationSettings:
    max_new_tokens: int = 512
    batch_size: int = 8
    repetition_penalty: float = 1.2  # NEFTune README / experiment_code/eval_generate.py
    prompt_overflow: str = "truncate"  # "truncate" (keep the last tokens) | "fail"
    context_length: int | None = None  # None: the model's max_position_embeddings

    def validate(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise RunError(
                f"max_new_tokens and batch_size must be >= 1, got {self.max_new_tokens}, {self.batch_size}"
            )
        if self.repetition_penalty <= 0:
            raise RunError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.prompt_overflow not in OVERFLOW_POLICIES:
            raise RunError(
                f"prompt_overflow must be one of {OVERFLOW_POLICIES}, got {self.prompt_overflow!r}"
            )


@dataclass
class Prompt:
    """One prompt: `fields` are the example's own (instruction, optional input); `extra` is copied into the
    output record (dataset, reference, ...); `text`, when given, is the exact model input (a training
    example's own prompt, earlier conversation turns included) and the formatter is not used."""

    id: int | str
    fields: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)
    text: str | None = None


# A prompt formatter turns an example's fields into the exact model input text.
PromptFormatter = Callable[[dict[str, str]], str]


def user_message(fields: dict[str, str]) -> str:
    """The user turn for a chat template: the instruction, then the optional input after a blank line."""
    extra = (fields.get("input") or "").strip()
    return fields["instruction"] + (f"\n\n{extra}" if extra else "")


def encode_prompt(tokenizer: Any, prompt: Prompt, formatter: PromptFormatter | None) -> list[int]:
    """Token ids of one prompt: its own text or the formatted fields with the tokenizer's usual special
    tokens (BOS for Llama, as a tokenizer call in SFT adds them), else, when `formatter` is None, the
    tokenizer's chat template (which places the special tokens itself)."""
    if prompt.text is not None:
        return tokenizer(prompt.text)["input_ids"]
    fields = prompt.fields
    if formatter is None:
        if not getattr(tokenizer, "chat_template", None):
            raise RunError("the tokenizer has no chat template; give a prompt template instead")
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message(fields)}], add_generation_prompt=True, tokenize=False
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(formatter(fields))["input_ids"]


def context_length(model: Any, settings: GenerationSettings) -> int:
    if settings.context_length is not None:
        return settings.context_length
    positions = getattr(model.config, "max_position_embeddings", None)
    if not positions:
        raise RunError(f"{type(model).__name__} has no max_position_embeddings; set context_length")
    return int(positions)


def fit_prompt(prompt_id: int | str, ids: list[int], budget: int, policy: str) -> tuple[list[int], bool]:
    """(ids that fit in `budget` tokens, whether they were cut); see the module docstring."""
    if len(ids) <= budget:
        return ids, False
    if policy == "fail":
        raise RunError(
            f"prompt {prompt_id!r} has {len(ids)} tokens but only {budget} fit (context length minus "
            "max_new_tokens); use prompt_overflow: truncate, or fewer max_new_tokens"
        )
    return ids[-budget:], True


class _UnpaddedRepetitionPenalty:
    """transformers' repetition penalty (CTRL, Keskar et al. 2019: divide positive logits of seen tokens by
    the penalty, multiply negative ones), counting only tokens after each row's left padding."""

    def __init__(self, penalty: float, pad_lengths: Sequence[int]) -> None:
        self.penalty = penalty
        self.pad_lengths = list(pad_lengths)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        pad = torch.tensor(self.pad_lengths, device=input_ids.device).unsqueeze(1)
        real = (positions.unsqueeze(0) >= pad).to(scores.dtype)
        # scatter_add, not scatter: with repeated ids, scatter keeps an arbitrary one of the written values
        seen = torch.zeros_like(scores).scatter_add_(1, input_ids, real) > 0
        penalised = torch.where(scores < 0, scores * self.penalty, scores / self.penalty)
        return torch.where(seen, penalised, scores)


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids of the generation config (a chat model may have several) and the tokenizer's."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids.update(configured if isinstance(configured, list) else [configured])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if not ids:
        raise RunError("neither the model's generation config nor the tokenizer defines an EOS token")
    return sorted(ids)


def generate_batch(
    model: Any, tokenizer: Any, batch: Sequence[list[int]], settings: GenerationSettings
) -> list[tuple[list[int], bool]]:
    """Greedy continuations of left-padded prompts: per prompt, (new ids up to EOS, hit max_new_tokens)."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(ids) for ids in batch)
    pad_lengths = [width - len(ids) for ids in batch]
    input_ids = torch.tensor([[pad_id] * pad + ids for pad, ids in zip(pad_lengths, batch, strict=True)])
    attention_mask = torch.tensor(
        [[0] * pad + [1] * len(ids) for pad, ids in zip(pad_lengths, batch, strict=True)]
    )
    stops = stop_token_ids(model, tokenizer)
    config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=settings.max_new_tokens,
        pad_token_id=pad_id,
        eos_token_id=stops,
    )
    processors = LogitsProcessorList()
    if settings.repetition_penalty != 1.0:
        processors.append(_UnpaddedRepetitionPenalty(settings.repetition_penalty, pad_lengths))
    device = next(model.parameters()).device
    with torch.no_grad():
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=config,
            logits_processor=processors,
        )
    results = []
    for row in output[:, width:].tolist():
        stop_at = next((i for i, token in enumerate(row) if token in stops), None)
        results.append((row if stop_at is None else row[:stop_at], stop_at is None))
    return results


def _read_done(path: Path) -> dict[str, dict[str, Any]]:
    """Records already generated, keyed by str(id). A last line cut short by a kill is dropped from the
    file (it is regenerated); a malformed line elsewhere is an error naming the line."""
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    done: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not line.endswith("\n"):
                logger.warning(
                    "%s: dropping the unfinished last line %d (it will be regenerated)", path, number
                )
                path.write_text("".join(lines[:-1]), encoding="utf-8")
                break
            raise RunError(f"{path} line {number} is not JSON; delete the file to start over") from None
        done[str(record["id"])] = record
    return done


def summary_path(out: Path) -> Path:
    """generations/alpaca_eval.jsonl -> generations/alpaca_eval.summary.json"""
    return out.with_suffix(".summary.json")


def _check_resume(out: Path, settings_record: dict[str, Any], n_done: int) -> None:
    previous_path = summary_path(out)
    if not n_done or not previous_path.exists():
        return
    previous = json.loads(previous_path.read_text(encoding="utf-8")).get("settings", {})
    changed = {
        k: (previous.get(k), settings_record[k]) for k in RESUME_KEYS if previous.get(k) != settings_record[k]
    }
    if changed:
        detail = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changed.items())
        raise RunError(
            f"{out} holds {n_done} generations made with other settings ({detail}); "
            "delete it (and its .summary.json) or rerun with the same settings"
        )


def generate_to_jsonl(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    out: str | Path,
    *,
    settings: GenerationSettings,
    generator: str,
    formatter: PromptFormatter | None = None,
    prompt_format: str = "chat_template",
) -> dict[str, Any]:
    """Generate for every prompt whose id is not yet in `out`; append each batch; write the summary.

    `formatter` None uses the tokenizer's chat template; `prompt_format` names the format in the summary
    (and a resumed run must use the same). Returns the summary (also written to <out>.summary.json).
    """
    from tqdm.auto import tqdm

    settings.validate()
    out = Path(out)
    ids = [str(prompt.id) for prompt in prompts]
    if len(set(ids)) != len(ids):
        raise RunError(f"prompt ids are not unique ({len(ids) - len(set(ids))} duplicates)")
    context = context_length(model, settings)
    budget = context - settings.max_new_tokens
    if budget < 1:
        raise RunError(f"max_new_tokens {settings.max_new_tokens} leaves no room for a prompt in {context}")
    settings_record = {**asdict(settings), "context_length": context, "generator": generator}
    settings_record["prompt_format"] = prompt_format
    done = _generated_by(out, generator)
    _check_resume(out, settings_record, len(done))
    pending = _pending_prompts(prompts, done, tokenizer, formatter, budget, settings.prompt_overflow)
    if done:
        logger.info(
            "%s: %d of %d prompts already generated; %d to go", out, len(done), len(prompts), len(pending)
        )

    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    started, new_tokens = time.perf_counter(), 0
    with tqdm(total=len(pending), desc=f"generate {out.name}", unit="prompt", disable=not pending) as bar:
        for start in range(0, len(pending), settings.batch_size):
            chunk = pending[start : start + settings.batch_size]
            results = generate_batch(model, tokenizer, [fitted for _, fitted, _, _ in chunk], settings)
            lines = []
            for (prompt, _, prompt_tokens, truncated), (tokens, hit_max) in zip(chunk, results, strict=True):
                record = _output_record(
                    prompt, prompt_tokens, truncated, tokens, hit_max, tokenizer, generator
                )
                done[str(prompt.id)] = record
                new_tokens += len(tokens)
                lines.append(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
            with out.open("a", encoding="utf-8") as handle:  # one write per batch: all of it or a cut line
                handle.write("".join(lines))
                handle.flush()
            bar.update(len(chunk))
            seconds = time.perf_counter() - started
            bar.set_postfix(tok_s=f"{new_tokens / seconds:.1f}")
            _write_summary(out, done, len(prompts), settings_record, new_tokens, seconds)
    return _write_summary(out, done, len(prompts), settings_record, new_tokens, time.perf_counter() - started)


def _generated_by(out: Path, generator: str) -> dict[str, dict[str, Any]]:
    """{id: record} already in `out` from `generator`. Generations of another model (e.g. the run was
    retrained with a new config) are kept aside, never mixed with this model's: generation starts over."""
    done = _read_done(out)
    stale = sorted({record.get("generator") for record in done.values()} - {generator}, key=str)
    if stale:
        aside = out.with_name(f"{out.stem}.stale-{int(time.time())}{out.suffix}")
        out.rename(aside)
        summary_path(out).unlink(missing_ok=True)
        logger.warning("%s: made by %s, not %s; moved to %s, generating again", out, stale, generator, aside)
        done = {}
    return done


def _pending_prompts(
    prompts: Sequence[Prompt],
    done: dict[str, dict[str, Any]],
    tokenizer: Any,
    formatter: PromptFormatter | None,
    budget: int,
    prompt_overflow: str,
) -> list[tuple[Prompt, list[int], int, bool]]:
    """[(prompt, fitted token ids, full prompt length, truncated)] of the prompts not yet generated,
    longest first (stable: ties keep prompt order)."""
    pending = []
    for prompt in prompts:
        if str(prompt.id) in done:
            continue
        full = encode_prompt(tokenizer, prompt, formatter)
        fitted, truncated = fit_prompt(prompt.id, full, budget, prompt_overflow)
        pending.append((prompt, fitted, len(full), truncated))
    pending.sort(key=lambda item: -len(item[1]))
    return pending


def _output_record(
    prompt: Prompt,
    prompt_tokens: int,
    truncated: bool,
    tokens: list[int],
    hit_max: bool,
    tokenizer: Any,
    generator: str,
) -> dict[str, Any]:
    """The output record of one prompt: the decoded generation, its lengths and the prompt's extras."""
    record = {
        "id": prompt.id,
        "instruction": prompt.fields["instruction"],
        "output": tokenizer.decode(tokens, skip_special_tokens=True).strip(),
        "generator": generator,
        "prompt_tokens": prompt_tokens,
        "truncated": truncated,
        "output_tokens": len(tokens),
        "hit_max_new_tokens": hit_max,
        **prompt.extra,
    }
    if prompt.fields.get("input"):
        record["input"] = prompt.fields["input"]
    return record


def _write_summary(
    out: Path,
    done: dict[str, dict[str, Any]],
    n_expected: int,
    settings_record: dict[str, Any],
    new_tokens: int,
    seconds: float,
) -> dict[str, Any]:
    records = list(done.values())
    summary = {
        "n": len(records),
        "n_expected": n_expected,
        "complete": len(records) >= n_expected,
        "n_truncated": sum(bool(record.get("truncated")) for record in records),
        "n_hit_max_new_tokens": sum(bool(record.get("hit_max_new_tokens")) for record in records),
        "mean_output_tokens": (
            sum(record.get("output_tokens", 0) for record in records) / len(records) if records else None
        ),
        "settings": settings_record,
        # this invocation only (a resumed run reports its own part)
        "last_run": {
            "new_tokens": new_tokens,
            "seconds": seconds,
            "tokens_per_second": new_tokens / seconds if seconds else None,
        },
    }
    write_json_atomic(summary_path(out), summary)
    return summary


# ---------------------------------------------------------------------------------------------- prompts


def alpaca_eval_prompts(data_dir: str | Path) -> list[Prompt]:
    """The 805 AlpacaEval instructions; id = row number, `dataset` = AlpacaEval's source subset."""
    from robustft.data.instruct import load_alpaca_eval

    return [
        Prompt(id=row["id"], fields={"instruction": row["instruction"]}, extra={"dataset": row["dataset"]})
        for row in load_alpaca_eval(data_dir)
    ]


def sample_train_prompts(
    examples: Sequence[Any], dataset: str, max_prompts: int | None, seed: int
) -> list[Prompt]:
    """A seeded random sample of training examples (InstructExample) as prompts, id = position in
    `examples`, with the training response as "reference" (NEFTune Figure 5: ~300 sampled Alpaca training
    prompts). Each keeps its own templated prompt, exactly as SFT saw it."""
    indices = list(range(len(examples)))
    if max_prompts is not None and max_prompts < len(indices):
        indices = sorted(random.Random(seed).sample(indices, max_prompts))
    return [
        Prompt(
            id=index,
            fields={"instruction": examples[index].instruction, "input": examples[index].input},
            extra={"dataset": dataset, "reference": examples[index].completion},
            text=examples[index].prompt,
        )
        for index in indices
    ]


def sft_training_examples(sft_dir: str | Path, tokenizer: Any) -> tuple[str, list[Any]]:
    """(dataset, the examples the SFT run in `sft_dir` trained on): its spec from sft/run.json, then the
    same split and subsample as SFT (held-out examples excluded), so Figure 5 measures memorisation of
    data the model saw."""
    from robustft.train.sft import SFTRunSpec, SFTSettings, load_sft_data

    run_json = Path(sft_dir) / "run.json"
    if not run_json.is_file():
        raise RunError(f"--prompts train: {run_json} not found (the SFT run records its data there)")
    spec_record = dict(json.loads(run_json.read_text(encoding="utf-8"))["spec"])
    spec = SFTRunSpec(**{**spec_record, "sft": SFTSettings(**spec_record["sft"])})

    def count_tokens(text: str) -> int:  # as SFT sized ShareGPT chunks
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    train, _, _ = load_sft_data(spec, count_tokens=count_tokens)
    return spec.dataset, train.examples


# ------------------------------------------------------------------------------------------------- CLI


def _generator_name(args: argparse.Namespace) -> str:
    if args.generator:
        return args.generator
    if args.model:
        return args.model
    # results/instruct/<model>/<dataset>/<recipe>/<method>/seed<S>-<key>/sft
    # -> model/dataset/recipe/method/seed<S>-<key>,
    # plus the SFT run's config hash: a retrained model is another generator (its old outputs are stale).
    name = "/".join(Path(args.sft_dir).resolve().parent.parts[-5:])
    metrics = Path(args.sft_dir) / "metrics.json"
    config_hash = json.loads(metrics.read_text()).get("config_hash") if metrics.exists() else None
    return f"{name}@{config_hash}" if config_hash else name


TEMPLATES = ("chat", "alpaca", "vicuna")


def template_formatter(template: str) -> PromptFormatter | None:
    """The formatter of a template name: None for the tokenizer's chat template, else the SFT templates of
    robustft.data.instruct (Alpaca; Vicuna v1.1 for ShareGPT)."""
    if template == "chat":
        return None
    from robustft.data import instruct

    if template == "alpaca":
        return lambda fields: instruct.alpaca_prompt(fields["instruction"], fields.get("input", ""))
    if template == "vicuna":
        return lambda fields: instruct.vicuna_prompt([], user_message(fields))
    raise RunError(f"unknown prompt template {template!r}; known: {TEMPLATES}")


def _template_name(args: argparse.Namespace) -> str:
    """--template, else the training dataset's template (--dataset), else the chat template for --model."""
    if args.template:
        return args.template
    if args.dataset:
        from robustft.data.instruct import get_instruct_dataset

        return get_instruct_dataset(args.dataset).template
    if args.model:
        return "chat"
    raise RunError(
        "--sft-dir: give --dataset (the run's training set, which picks its template) or --template"
    )


def cmd_generate(args: argparse.Namespace) -> int:
    if bool(args.sft_dir) == bool(args.model):
        raise RunError(
            "give exactly one of --sft-dir (a fine-tuned run) or --model (an untuned registry model)"
        )
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        repetition_penalty=args.repetition_penalty,
        prompt_overflow=args.prompt_overflow,
        context_length=args.context_length,
    )
    settings.validate()
    if args.prompts == "alpaca_eval":
        prompts = alpaca_eval_prompts(args.data_dir)
        if args.max_prompts is not None:
            prompts = prompts[: args.max_prompts]
    elif not (args.sft_dir or args.dataset):
        raise RunError("--prompts train needs --sft-dir (its training set) or --dataset")
    template = _template_name(args)
    formatter = template_formatter(template)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.sft_dir:
        from robustft.train.sft import load_finetuned

        model, tokenizer = load_finetuned(args.sft_dir, dtype=args.dtype)
    else:
        from robustft.models import load_causal_lm

        model, tokenizer = load_causal_lm(args.model, dtype=args.dtype, cache_dir=args.cache_dir)
    if args.prompts == "train":
        if args.sft_dir:
            dataset, examples = sft_training_examples(args.sft_dir, tokenizer)
        else:  # an untuned model: sample the whole dataset
            from robustft.data.instruct import load_instruct_dataset

            dataset, examples = args.dataset, load_instruct_dataset(args.dataset, args.data_dir).examples
        prompts = sample_train_prompts(examples, dataset, args.max_prompts, args.seed)
    if args.device:
        model.to(args.device)
    summary = generate_to_jsonl(
        model,
        tokenizer,
        prompts,
        args.out,
        settings=settings,
        generator=_generator_name(args),
        formatter=formatter,
        prompt_format=template,
    )
    print(json.dumps({k: summary[k] for k in ("n", "n_expected", "n_truncated", "last_run")}, indent=2))
    return 0
