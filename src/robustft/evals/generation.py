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

Variants (NEFTune Tables 5 and 10) change one thing each against this plain generation: a system prompt
(text added to the template's system part), `min_new_tokens` (EOS blocked until then), or sampled decoding
(`do_sample` with `top_p` and `temperature`, the repetition penalty still on). Sampling is seeded per batch
from (`sampling_seed`, the batch's prompt ids): a rerun reproduces every output, and a resumed run too,
since it regenerates whole batches of the same prompts (the same batch size). A sampled output still
depends on its batch mates, as the random stream is shared by the batch.
"""

from __future__ import annotations

import argparse
import hashlib
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
    # a variant's (unset in the plain generation's summary)
    "system_prompt",
    "min_new_tokens",
    "do_sample",
    "top_p",
    "temperature",
    "sampling_seed",
)
# A variant's settings (instruct.generation.variants) and the fields of GenerationSettings they set; the
# plain generation leaves them all unset, and its summary does not list them.
VARIANT_FIELDS = ("system_prompt", "min_new_tokens", "do_sample", "top_p", "temperature")
SAMPLING_TOP_K = 50  # transformers' default top_k (see generate_batch)


@dataclass
class GenerationSettings:
    max_new_tokens: int = 512
    batch_size: int = 8
    repetition_penalty: float = 1.2  # NEFTune README / experiment_code/eval_generate.py
    prompt_overflow: str = "truncate"  # "truncate" (keep the last tokens) | "fail"
    context_length: int | None = None  # None: the model's max_position_embeddings
    # Variants (module docstring); None / False: the plain, greedy generation.
    system_prompt: str | None = None
    min_new_tokens: int | None = None
    do_sample: bool = False
    top_p: float | None = None
    temperature: float | None = None
    sampling_seed: int = 0

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
        problem = variant_error(asdict(self), self.max_new_tokens)
        if problem:
            raise RunError(problem)

    def record(self) -> dict[str, Any]:
        """The settings as a summary records them: a variant field only when it is set, so the plain
        generation's summary stays as it was, and the sampling seed only when decoding samples."""
        record = asdict(self)
        for name in VARIANT_FIELDS:
            if record[name] in (None, False):
                del record[name]
        if not self.do_sample:
            del record["sampling_seed"]
        return record


def variant_error(settings: dict[str, Any], max_new_tokens: int) -> str | None:
    """What is wrong with a variant's settings (a GenerationSettings' or a config entry's), or None."""
    sampling = [name for name in ("top_p", "temperature") if settings.get(name) is not None]
    if sampling and not settings.get("do_sample"):
        return f"{' and '.join(sampling)} need do_sample: true (greedy decoding ignores them)"
    if settings.get("top_p") is not None and not 0 < settings["top_p"] <= 1:
        return f"top_p must be in (0, 1], got {settings['top_p']}"
    if settings.get("temperature") is not None and settings["temperature"] <= 0:
        return f"temperature must be > 0, got {settings['temperature']}"
    minimum = settings.get("min_new_tokens")
    if minimum is not None and not 1 <= minimum < max_new_tokens:
        return f"min_new_tokens must be at least 1 and below max_new_tokens ({max_new_tokens}), got {minimum}"
    return None


def variant_dir_name(name: str, settings: dict[str, Any]) -> str:
    """<name>-<8 hex digits of its settings>: the folder of a variant's generations and judgements in its
    run directory, so two configs that give one name other settings never share (or mix) outputs."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return f"{name}-{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"


def batch_seed(seed: int, prompt_ids: Sequence[int | str]) -> int:
    """The seed of one sampled batch: from the run's seed and its prompts, so a rerun or a resumed run
    draws the same outputs for the same batch (see the module docstring)."""
    text = json.dumps([seed, [str(i) for i in prompt_ids]])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


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


def encode_prompt(
    tokenizer: Any, prompt: Prompt, formatter: PromptFormatter | None, system_prompt: str | None = None
) -> list[int]:
    """Token ids of one prompt: its own text or the formatted fields with the tokenizer's usual special
    tokens (BOS for Llama, as a tokenizer call in SFT adds them), else, when `formatter` is None, the
    tokenizer's chat template (which places the special tokens itself), with `system_prompt` as a system
    message (a template formatter carries its own: template_formatter)."""
    if prompt.text is not None:
        return tokenizer(prompt.text)["input_ids"]
    fields = prompt.fields
    if formatter is None:
        if not getattr(tokenizer, "chat_template", None):
            raise RunError("the tokenizer has no chat template; give a prompt template instead")
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        text = tokenizer.apply_chat_template(
            [*system, {"role": "user", "content": user_message(fields)}],
            add_generation_prompt=True,
            tokenize=False,
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
    """Continuations of left-padded prompts, greedy unless `settings.do_sample` (the caller seeds it): per
    prompt, (new ids up to EOS, hit max_new_tokens)."""
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
    # transformers' min_new_tokens blocks every id of eos_token_id (all the stops) until then. Sampling sets
    # top_k to transformers' default, 50, which the NEFTune authors' script used: left unset, generate would
    # take the model's own generation_config.json value, so two models would sample differently.
    sampling = (
        {"top_p": settings.top_p, "temperature": settings.temperature, "top_k": SAMPLING_TOP_K}
        if settings.do_sample
        else {}
    )
    config = GenerationConfig(
        do_sample=settings.do_sample,
        num_beams=1,
        max_new_tokens=settings.max_new_tokens,
        min_new_tokens=settings.min_new_tokens,
        pad_token_id=pad_id,
        eos_token_id=stops,
        **{name: value for name, value in sampling.items() if value is not None},
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
    # .get on both: a setting a summary leaves out (an unset variant field) is None in either.
    changed = {
        k: (previous.get(k), settings_record.get(k))
        for k in RESUME_KEYS
        if previous.get(k) != settings_record.get(k)
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
    settings_record = {**settings.record(), "context_length": context, "generator": generator}
    settings_record["prompt_format"] = prompt_format
    done = _generated_by(out, generator)
    _check_resume(out, settings_record, len(done))
    pending = _pending_prompts(prompts, done, tokenizer, formatter, budget, settings)
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
            if settings.do_sample:
                import torch

                torch.manual_seed(batch_seed(settings.sampling_seed, [prompt.id for prompt, *_ in chunk]))
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
    settings: GenerationSettings,
) -> list[tuple[Prompt, list[int], int, bool]]:
    """[(prompt, fitted token ids, full prompt length, truncated)] of the prompts not yet generated,
    longest first (stable: ties keep prompt order)."""
    pending = []
    for prompt in prompts:
        if str(prompt.id) in done:
            continue
        full = encode_prompt(tokenizer, prompt, formatter, settings.system_prompt)
        fitted, truncated = fit_prompt(prompt.id, full, budget, settings.prompt_overflow)
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


def template_formatter(template: str, system_prompt: str | None = None) -> PromptFormatter | None:
    """The formatter of a template name: None for the tokenizer's chat template, else the SFT templates of
    robustft.data.instruct (Alpaca; Vicuna v1.1 for ShareGPT), with `system_prompt` added to the
    template's system part (with_system_prompt). A chat template takes it as a system message instead
    (encode_prompt)."""
    if template == "chat":
        return None
    from robustft.data import instruct

    if template == "alpaca":
        alpaca = lambda fields: instruct.alpaca_prompt(fields["instruction"], fields.get("input", ""))  # noqa: E731
        return (
            alpaca if not system_prompt else lambda fields: with_system_prompt(alpaca(fields), system_prompt)
        )
    if template == "vicuna":
        vicuna = lambda fields: instruct.vicuna_prompt([], user_message(fields))  # noqa: E731
        return (
            vicuna if not system_prompt else lambda fields: with_system_prompt(vicuna(fields), system_prompt)
        )
    raise RunError(f"unknown prompt template {template!r}; known: {TEMPLATES}")


def with_system_prompt(prompt: str, system_prompt: str) -> str:
    """`prompt` (an Alpaca or Vicuna prompt) with `system_prompt` after its system part, one space between:
    the Alpaca preamble ends where "### Instruction:" starts, the Vicuna system text where " USER:" does.
    The rest of the template, the response cue included, stays as the model was trained on it."""
    for marker in ("\n\n### Instruction:", " USER:"):
        head, found, tail = prompt.partition(marker)
        if found:
            return f"{head} {system_prompt}{found}{tail}"
    raise RunError(f"cannot place a system prompt: the prompt has no system part ({prompt[:60]!r}...)")


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
        system_prompt=args.system_prompt,
        min_new_tokens=args.min_new_tokens,
        do_sample=args.do_sample,
        top_p=args.top_p,
        temperature=args.temperature,
        sampling_seed=args.seed,
    )
    settings.validate()
    if args.prompts == "alpaca_eval":
        prompts = alpaca_eval_prompts(args.data_dir)
        if args.max_prompts is not None:
            prompts = prompts[: args.max_prompts]
    elif not (args.sft_dir or args.dataset):
        raise RunError("--prompts train needs --sft-dir (its training set) or --dataset")
    elif args.system_prompt:
        raise RunError("--system-prompt applies to AlpacaEval prompts: training prompts keep SFT's own text")
    template = _template_name(args)
    formatter = template_formatter(template, args.system_prompt)
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
