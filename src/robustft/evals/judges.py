"""Pairwise judges and the AlpacaEval win rate against the reference (text-davinci-003) outputs.

NEFTune's main metric is the AlpacaEval v1 win rate judged by GPT-4 (`alpaca_eval_gpt4`). A judge sees an
instruction and two outputs and says which is better; AlpacaEval encodes the verdict as a preference in
[1, 2] (1 = the reference wins, 2 = the model wins, 1.5 = a draw) and reports

    win_rate = mean(preference − 1) · 100,   standard_error = sem(preference − 1) · 100

(`alpaca_eval.metrics.helpers.AbsoluteScoringRule.describe_head2head`), so a draw counts half and a
continuous preference (from a judge's log-probabilities) counts in proportion. Items without a valid
preference (an unparseable answer) are dropped from the rate, as AlpacaEval drops them, and counted.

Which output is shown first is a seeded coin per instruction, to cancel the judges' position bias (as
AlpacaEval's `is_randomize_output_order`); every annotation records it. Every judgement is cached in
`<cache dir>/<judge name>.jsonl`, one line per call, keyed by a hash of the judge's identity (kind,
model, endpoint, prompt and decoding settings; never the API key), the instruction and both outputs in
the order shown, so a rerun, or a second run that shares outputs, costs nothing. Concurrent judge jobs
share the file: each append holds a lock on it, and a line cut short by a killed job is skipped.

Judges (JUDGES, one entry per kind):
- `openai`: any OpenAI-compatible chat-completions endpoint (OpenAI's GPT-4 as in the paper, or a vLLM
  server at `base_url`), AlpacaEval v1's `alpaca_eval_gpt4` ranking prompt, temperature 0, called through
  the openai package (the `judge` extra; imported only when such a judge judges), whose client retries
  and times out. The API key is read from the environment variable named by `api_key_env` at the first
  request and goes nowhere else.
- `local_hf`: a local causal LM; the preference is 1 + P("2") / (P("1") + P("2")) from its next-token
  distribution after a pairwise prompt, like AlpacaEval's weighted (log-probability) annotators.
Numbers from a judge other than GPT-4 are "AlpacaEval protocol with judge X", not leaderboard numbers.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from robustft.errors import DataFormatError, DataNotFoundError, JudgeUnavailableError, RunError
from robustft.io import append_jsonl, read_jsonl, write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

REFERENCE_GENERATOR = "text_davinci_003"
LENGTH_CONTROLLED_REASON = (
    "not computed: AlpacaEval's length-controlled win rate (metrics/glm_winrate.py, length_controlled_v1) "
    "fits a per-model GLM regularised towards precomputed 'gamed' annotations of the same annotator "
    "(df_gamed.csv, downloaded from the Hub at run time) with per-instruction difficulties; neither exists "
    "offline for this judge and the text-davinci-003 baseline, so it cannot be reproduced faithfully here"
)


# ------------------------------------------------------------------------------------------- prompts

# AlpacaEval v1 `alpaca_eval_gpt4` (evaluators_configs/alpaca_eval_gpt4/alpaca_eval.txt): a chat prompt
# asking for a Python list of {'model', 'rank'}; parsed by AlpacaEval's `ranking_parser`.
ALPACA_EVAL_GPT4_SYSTEM = "You are a helpful assistant, who ranks models by the quality of their answers."
ALPACA_EVAL_GPT4_USER = """I want you to create a leaderboard of different of large-language models. To do so, I will give you the instructions (prompts) given to the models, and the responses of two models. Please rank the models based on which responses would be preferred by humans. All inputs and outputs should be python dictionaries.

Here is the prompt:
{{
    "instruction": \"\"\"{instruction}\"\"\",
}}

Here are the outputs of the models:
[
    {{
        "model": "model_1",
        "answer": \"\"\"{output_1}\"\"\"
    }},
    {{
        "model": "model_2",
        "answer": \"\"\"{output_2}\"\"\"
    }}
]

Now please rank the models by the quality of their answers, so that the model with rank 1 has the best output. Then return a list of the model names and ranks, i.e., produce the following output:
[
    {{'model': <model-name>, 'rank': <model-rank>}},
    {{'model': <model-name>, 'rank': <model-rank>}}
]

Your response must be a valid Python dictionary and should contain nothing else because we will directly execute it in Python. Please provide the ranking that the majority of humans would give."""  # noqa: E501

# The local judge answers with one token, so its prompt ends by asking for "1" or "2".
LOCAL_JUDGE_SYSTEM = "You are a helpful assistant who compares two answers to an instruction."
LOCAL_JUDGE_USER = """Which of the two outputs below is the better response to the instruction, as most people would judge it?

Instruction:
{instruction}

Output 1:
{output_1}

Output 2:
{output_2}

Answer with a single digit: 1 if Output 1 is better, 2 if Output 2 is better."""  # noqa: E501
LOCAL_JUDGE_ANSWER_PREFIX = "The better output is Output"


def parse_ranking(completion: str) -> float | None:
    """AlpacaEval's ranking_parser: the rank of model_1 (1: the first output shown wins, 2: the second), or
    None when the answer is not such a list."""
    candidates = [completion.strip()]
    match = re.search(r"\[.*\]", completion, flags=re.DOTALL)
    if match:
        candidates.append(match.group(0))
    for text in candidates:
        try:
            ranking = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if not isinstance(ranking, list | tuple):
            continue
        ranks = [
            item.get("rank") for item in ranking if isinstance(item, dict) and item.get("model") == "model_1"
        ]
        if ranks and ranks[0] in (1, 2):
            return float(ranks[0])
    return None


# -------------------------------------------------------------------------------------------- judges


@dataclass
class Verdict:
    preference: float | None  # in [1, 2]; 1: the output shown FIRST is better; None: no valid verdict
    raw: Any


@dataclass
class Judge:
    """One judge kind. Fields are its settings; `identity()` those that change verdicts (cache keys)."""

    kind: ClassVar[str]
    # Whether judging calls out over the network: the workflow then runs the judge where Snakemake runs,
    # never on an (offline) compute node.
    needs_network: ClassVar[bool] = False
    model: str
    description: str = ""
    workers: int = 1  # threads judging at once: the openai kind's bound on requests in flight

    def identity(self) -> dict[str, Any]:
        raise NotImplementedError

    def judge(self, instruction: str, output_1: str, output_2: str) -> Verdict:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """Every setting (the init fields), as written in the result; a key is named, never held."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def describe(self, name: str) -> dict[str, Any]:
        return {"name": name, "kind": self.kind, "model": self.model, "description": self.description}


JUDGES: dict[str, type[Judge]] = {}


def register_judge(cls: type[Judge]) -> type[Judge]:
    JUDGES[cls.kind] = cls
    return cls


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


# Where the openai package sends requests when neither `base_url` nor $OPENAI_BASE_URL says otherwise.
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
# The key sent to a server that takes none (`api_key_env: null`): the openai client refuses an empty key,
# and vLLM's OpenAI-compatible server, started without --api-key, ignores whatever comes.
NO_KEY_PLACEHOLDER = "EMPTY"
OPENAI_PACKAGE_HINT = "pip install 'robustft[judge]' (or: pip install openai)"


@register_judge
@dataclass
class OpenAIJudge(Judge):
    """An OpenAI-compatible /chat/completions endpoint (GPT-4 as in the paper, or a vLLM server), called
    through the openai package, whose client does the retries and timeouts. Its requests run in `workers`
    threads sharing one client, so at most `workers` are in flight."""

    kind: ClassVar[str] = "openai"
    needs_network: ClassVar[bool] = True
    model: str = "gpt-4-0613"  # alpaca_eval_gpt4's model_name
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else OpenAI's API (as the openai package does)
    api_key_env: str | None = "OPENAI_API_KEY"  # None: no key (a local server)
    max_tokens: int = 100  # alpaca_eval_gpt4's completions_kwargs
    temperature: float = 0.0
    timeout_s: float = 120.0  # per attempt
    # The openai client's retries: of connection errors, timeouts and HTTP 408/409/429/5xx, waiting as the
    # server's Retry-After asks, else with the package's exponential backoff.
    max_retries: int = 4
    description: str = "AlpacaEval v1 alpaca_eval_gpt4 ranking prompt, temperature 0"
    _client: Any = field(default=None, init=False, repr=False, compare=False)
    _client_lock: Any = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule}, got {value!r}"
            for name, value, rule, ok in (
                ("timeout_s", self.timeout_s, "> 0", self.timeout_s > 0),
                ("max_retries", self.max_retries, ">= 0", self.max_retries >= 0),
                ("workers", self.workers, ">= 1", self.workers >= 1),
            )
            if not ok
        ]
        if problems:
            raise RunError(f"judge config (openai): {'; '.join(problems)}")

    @property
    def endpoint(self) -> str:
        """The base URL requests go to: the setting, else $OPENAI_BASE_URL, else OpenAI's API."""
        return (self.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL).rstrip("/")

    @property
    def url(self) -> str:
        return self.endpoint + "/chat/completions"

    def identity(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.model,
            "base_url": self.endpoint,
            "prompt": "alpaca_eval_gpt4",
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def _api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise RunError(f"judge endpoint {self.url}: environment variable {self.api_key_env} is not set")
        return key

    def client(self) -> Any:
        """The openai client, made on the first request (the key is read then) and shared by the workers
        (it is thread-safe). The package is imported here, so the module imports without it."""
        with self._client_lock:
            if self._client is None:
                try:
                    import openai
                except ImportError:
                    raise JudgeUnavailableError(
                        f"judge endpoint {self.url}: an openai judge needs the openai package; "
                        f"{OPENAI_PACKAGE_HINT}"
                    ) from None
                self._client = openai.OpenAI(
                    # never None: the package would then read $OPENAI_API_KEY and send it to any server
                    api_key=self._api_key() or NO_KEY_PLACEHOLDER,
                    base_url=self.endpoint,
                    timeout=self.timeout_s,
                    max_retries=self.max_retries,
                )
            return self._client

    def judge(self, instruction: str, output_1: str, output_2: str) -> Verdict:
        user = ALPACA_EVAL_GPT4_USER.format(instruction=instruction, output_1=output_1, output_2=output_2)
        messages = [
            {"role": "system", "content": ALPACA_EVAL_GPT4_SYSTEM},
            {"role": "user", "content": user},
        ]
        completion = self._complete(messages)
        return Verdict(parse_ranking(completion), completion)

    def _complete(self, messages: list[dict[str, str]]) -> str:
        """The completion's text; every failure, after the client's retries, is a JudgeUnavailableError
        that names the URL and never shows the key."""
        client = self.client()
        import openai

        try:
            response = client.chat.completions.create(
                model=self.model, messages=messages, temperature=self.temperature, max_tokens=self.max_tokens
            )
        except openai.APIStatusError as err:
            raise JudgeUnavailableError(self._status_message(err.status_code, err.response.text)) from None
        except openai.APIConnectionError as err:  # refused, reset, timed out (APITimeoutError)
            detail = f"{err} ({err.__cause__})" if err.__cause__ else str(err)
            raise JudgeUnavailableError(self._unreachable_message(detail)) from None
        except json.JSONDecodeError:  # a body that says it is JSON and is not
            raise JudgeUnavailableError(self._unreachable_message("a response that is not JSON")) from None
        except openai.OpenAIError as err:
            raise JudgeUnavailableError(
                f"judge endpoint {self.url}: {_redact(str(err), self._secret())}"
            ) from None
        try:
            return response.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):  # a body without choices, or not JSON at all
            raise JudgeUnavailableError(
                f"judge endpoint {self.url} answered without choices[0].message.content"
            ) from None

    def _secret(self) -> str | None:
        """The key the client sends, to cut out of any text shown (None: only the placeholder is sent)."""
        return self._client.api_key if self.api_key_env and self._client is not None else None

    def _status_message(self, status: int, body: str) -> str:
        if status in (408, 409, 429) or status >= 500:  # what the client retries: it gave up
            return self._unreachable_message(f"HTTP {status}")
        # 401/403 bodies may quote part of the key: never shown; others are shown redacted
        shown = "" if status in (401, 403) else _redact(body[:500], self._secret())
        return f"judge endpoint {self.url} refused the request: HTTP {status} {shown}".rstrip()

    def _unreachable_message(self, reason: str) -> str:
        reason = _redact(reason, self._secret())
        return f"judge endpoint {self.url} unreachable after {self.max_retries + 1} attempts (last: {reason})"


@register_judge
@dataclass
class LocalHFJudge(Judge):
    """A local causal LM (registry name or a saved model directory) compared on two verdict tokens."""

    kind: ClassVar[str] = "local_hf"
    model: str = "smollm2-135m"
    dtype: str = "fp32"
    cache_dir: str | None = None
    max_output_tokens: int = 768  # each output is cut to this many tokens so the prompt fits the context
    description: str = "next-token P('1') vs P('2') after a pairwise prompt (weighted preference)"
    _loaded: Any = field(default=None, init=False, repr=False, compare=False)

    def identity(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.model,
            "dtype": self.dtype,
            "prompt": "local_pairwise_v1",
            "max_output_tokens": self.max_output_tokens,
        }

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            if Path(self.model).is_dir():
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer

                dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
                model = AutoModelForCausalLM.from_pretrained(self.model, dtype=dtypes[self.dtype])
                tokenizer = AutoTokenizer.from_pretrained(self.model)
            else:
                from robustft.models import load_causal_lm

                model, tokenizer = load_causal_lm(self.model, dtype=self.dtype, cache_dir=self.cache_dir)
            self._loaded = (model.eval(), tokenizer)
        return self._loaded

    def _cut(self, tokenizer: Any, text: str) -> str:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= self.max_output_tokens else tokenizer.decode(ids[: self.max_output_tokens])

    def prompt_text(self, tokenizer: Any, instruction: str, output_1: str, output_2: str) -> str:
        user = LOCAL_JUDGE_USER.format(
            instruction=instruction,
            output_1=self._cut(tokenizer, output_1),
            output_2=self._cut(tokenizer, output_2),
        )
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": LOCAL_JUDGE_SYSTEM}, {"role": "user", "content": user}]
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            text = f"{LOCAL_JUDGE_SYSTEM}\n\n{user}\n\n"
        # Starting the answer leaves the digit as the one natural next token.
        return text + LOCAL_JUDGE_ANSWER_PREFIX

    @staticmethod
    def verdict_tokens(tokenizer: Any, prompt: str) -> tuple[list[int], int, int]:
        """(context ids, token of " 1", token of " 2"): the prompt is tokenised with each answer appended and
        the context is their common prefix, so any piece of the answer that both share (Llama's lone "▁")
        joins the context and the next tokens differ only by the digit."""
        first, second = (
            tokenizer(prompt + digit, add_special_tokens=False)["input_ids"] for digit in (" 1", " 2")
        )
        common = 0
        while common < min(len(first), len(second)) and first[common] == second[common]:
            common += 1
        if common >= min(len(first), len(second)):
            raise RunError("the local judge's tokenizer gives the same tokens for the answers ' 1' and ' 2'")
        return first[:common], first[common], second[common]

    def judge(self, instruction: str, output_1: str, output_2: str) -> Verdict:
        import torch

        model, tokenizer = self._model()
        prompt = self.prompt_text(tokenizer, instruction, output_1, output_2)
        ids, token_1, token_2 = self.verdict_tokens(tokenizer, prompt)
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit and len(ids) > limit:
            raise RunError(
                f"judge {self.model}: the prompt for instruction {instruction[:60]!r} has {len(ids)} tokens, "
                f"more than its {limit} positions; lower max_output_tokens"
            )
        tokens = [token_1, token_2]
        device = next(model.parameters()).device
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)[tokens]
        p_first, p_second = torch.softmax(logprobs, dim=-1).tolist()
        raw = {"logprob_1": logprobs[0].item(), "logprob_2": logprobs[1].item()}
        return Verdict(1.0 + p_second / (p_first + p_second), raw)


def judge_needs_network(config: dict[str, Any]) -> bool:
    """Whether the judge of `config` ({"kind": ..., ...}) calls out over the network (kind `openai`)."""
    kind = config.get("kind")
    if kind not in JUDGES:
        raise ValueError(f"judge config: 'kind' must be one of {sorted(JUDGES)}, got {kind!r}")
    return JUDGES[kind].needs_network


def build_judge(config: dict[str, Any]) -> Judge:
    """A judge from its config: {"kind": one of JUDGES, ...that kind's settings}."""
    settings = dict(config)
    kind = settings.pop("kind", None)
    if kind not in JUDGES:
        raise RunError(f"judge config: 'kind' must be one of {sorted(JUDGES)}, got {kind!r}")
    cls = JUDGES[kind]
    allowed = {f.name for f in cls.__dataclass_fields__.values() if f.init}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise RunError(f"judge config ({kind}): unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return cls(**settings)


# ---------------------------------------------------------------------------------------- annotation


@dataclass
class Pair:
    id: Any
    instruction: str
    output: str  # the model's
    reference: str


def model_shown_first(seed: int, instruction: str) -> bool:
    """The per-item coin: a hash of (seed, instruction), so it does not depend on order or on which items
    are judged together."""
    digest = hashlib.sha256(f"{seed}\x00{instruction}".encode()).digest()
    return digest[0] % 2 == 1


def cache_key(identity: dict[str, Any], instruction: str, output_1: str, output_2: str) -> str:
    """Hash of the judge identity, the instruction and both outputs in the order shown."""
    blob = json.dumps([identity, instruction, output_1, output_2], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def cache_path(cache_dir: str | Path, name: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise RunError(f"judge name {name!r}: use letters, digits, '_', '-', '.' (it names the cache file)")
    return Path(cache_dir) / f"{name}.jsonl"


def load_cache(path: Path) -> dict[str, dict[str, Any]]:
    """Every judgement in the cache, by key. Every judge job of a judge appends to the same file (under a
    lock, robustft.io.append_jsonl), so a line cut short by a killed job is skipped with a warning, never
    an error: its judgement is simply made again."""
    cache = {}
    for number, record in enumerate(read_jsonl(path, skip_malformed=True), start=1):
        if not isinstance(record, dict) or "key" not in record:
            logger.warning("judge cache %s: skipping record %d, which has no 'key'", path, number)
            continue
        cache[record["key"]] = record
    return cache


def annotate(
    pairs: Sequence[Pair], judge: Judge, cache_file: str | Path, *, seed: int = 0
) -> list[dict[str, Any]]:
    """Judge every pair (cache first), appending each new judgement to the cache as soon as it arrives.

    If the judge fails, the judgements already made are in the cache and the first error is raised.
    Annotations: {id, model_first, preference (2: the model wins), preference_shown, cached, raw}.
    """
    cache_file = Path(cache_file)
    cache = load_cache(cache_file)
    identity = judge.identity()
    shown = _shown_order(pairs, identity, seed)
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for item in shown:
        key = item[4]
        if key in cache:
            records[key] = {**cache[key], "cached": True}
        elif key not in {t[4] for t in todo}:
            todo.append(item)
    if todo:
        logger.info(
            "%s: %d of %d pairs cached; judging %d",
            cache_file.name,
            len(pairs) - len(todo),
            len(pairs),
            len(todo),
        )
        records.update(_judge_uncached(todo, judge, identity, cache_file))
    return [_annotation(pair, first, records[key]) for pair, first, _, _, key in shown]


def _shown_order(
    pairs: Sequence[Pair], identity: dict[str, Any], seed: int
) -> list[tuple[Pair, bool, str, str, str]]:
    """[(pair, model shown first, output shown first, output shown second, cache key)]: each pair in the
    order the judge sees it (model_shown_first), keyed by the judge and what it is shown."""
    shown = []
    for pair in pairs:
        first = model_shown_first(seed, pair.instruction)
        output_1, output_2 = (pair.output, pair.reference) if first else (pair.reference, pair.output)
        shown.append(
            (pair, first, output_1, output_2, cache_key(identity, pair.instruction, output_1, output_2))
        )
    return shown


def _judge_uncached(
    todo: list[tuple[Pair, bool, str, str, str]], judge: Judge, identity: dict[str, Any], cache_file: Path
) -> dict[str, dict[str, Any]]:
    """{key: record} of new judgements, judged by `judge.workers` threads, each appended to the cache as
    it arrives. On a failure the other pending judgements are cancelled, those still running are kept
    (cached), and then the first error is raised."""
    from tqdm.auto import tqdm

    records: dict[str, dict[str, Any]] = {}
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, judge.workers)) as pool:
        futures = {pool.submit(judge.judge, item[0].instruction, item[2], item[3]): item for item in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"judge {cache_file.stem}"):
            try:
                verdict = future.result()
            except CancelledError:
                continue
            except Exception as err:  # keep what the other workers finish, then raise the first error
                if error is None:
                    error = err
                    for pending in futures:
                        pending.cancel()
                continue
            key = futures[future][4]
            record = {
                "key": key,
                "preference_shown": verdict.preference,
                "raw": verdict.raw,
                "judge": identity,
            }
            append_jsonl(cache_file, record)
            records[key] = {**record, "cached": False}
    if error is not None:
        raise error
    return records


def _annotation(pair: Pair, first: bool, record: dict[str, Any]) -> dict[str, Any]:
    """One pair's annotation from its judgement `record` (cached or new)."""
    shown_preference = record["preference_shown"]
    # preference_shown 1 means the output shown first won; map to AlpacaEval's 2 = the model wins
    if shown_preference is None:
        preference = None
    elif first:
        preference = 3.0 - shown_preference
    else:
        preference = shown_preference
    return {
        "id": pair.id,
        "model_first": first,
        "preference": preference,
        "preference_shown": shown_preference,
        "cached": record["cached"],
        "raw": record["raw"],
    }


# ------------------------------------------------------------------------------------------- metrics


def win_rate_summary(
    preferences: Sequence[float | None], *, n_bootstrap: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """AlpacaEval's head-to-head numbers from preferences in [1, 2] (None/NaN: not a preference, dropped),
    plus a percentile bootstrap CI of the win rate (items resampled with replacement,
    robustft.stats.mean_bootstrap_ci)."""
    import numpy as np

    from robustft.stats import mean_bootstrap_ci  # scipy and statsmodels: only when summarising

    values = [p for p in preferences if p is not None and not math.isnan(p)]
    invalid = [p for p in values if not 1 <= p <= 2]
    if invalid:
        raise ValueError(f"preferences must lie in [1, 2], got {invalid[:3]}")
    n_invalid = len(preferences) - len(values)
    shifted = np.asarray(values, dtype=float) - 1  # 0: the reference wins, 1: the model wins
    n = shifted.size
    out: dict[str, Any] = {
        "n": n,
        "n_invalid": n_invalid,
        "n_wins": int((shifted > 0.5).sum()),
        "n_losses": int((shifted < 0.5).sum()),
        "n_draws": int((shifted == 0.5).sum()),
        "bootstrap": {"n": n_bootstrap, "seed": seed, "confidence": confidence, "method": "percentile"},
    }
    if n == 0:
        return {
            **out,
            "win_rate": None,
            "standard_error": None,
            "ci_low": None,
            "ci_high": None,
            "discrete_win_rate": None,
        }
    out["win_rate"] = float(shifted.mean() * 100)
    out["standard_error"] = float(shifted.std(ddof=1) / math.sqrt(n) * 100) if n > 1 else None
    # AlpacaEval's discrete_win_rate: each preference rounded to win/loss, exact 1.5 a half
    discrete = np.where(shifted == 0.5, 0.5, np.round(shifted))
    out["discrete_win_rate"] = float(discrete.mean() * 100)
    if n > 1 and n_bootstrap > 0:
        low, high = mean_bootstrap_ci(shifted, n_boot=n_bootstrap, confidence=confidence, seed=seed)
        out["ci_low"], out["ci_high"] = low * 100, high * 100
    else:
        out["ci_low"] = out["ci_high"] = None
    return out


def pairs_from_generations(
    generations: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], source: str
) -> list[Pair]:
    """Match each generation to its AlpacaEval reference: by row number (our ids) when the instruction
    agrees, else by instruction text (AlpacaEval's own join key)."""
    by_instruction = {row["instruction"]: row for row in rows}
    pairs = []
    for record in generations:
        if not {"id", "instruction", "output"} <= record.keys():
            raise DataFormatError(
                f"{source}: record {record.get('id')!r} needs 'id', 'instruction' and 'output'"
            )
        index = record["id"]
        row = rows[index] if isinstance(index, int) and 0 <= index < len(rows) else None
        if row is None or row["instruction"] != record["instruction"]:
            row = by_instruction.get(record["instruction"])
        if row is None:
            raise DataFormatError(
                f"{source}: the instruction of record {index!r} is not an AlpacaEval instruction"
            )
        pairs.append(
            Pair(
                id=index, instruction=record["instruction"], output=record["output"], reference=row["output"]
            )
        )
    return pairs


def judge_generations(
    generations_file: str | Path,
    judge: Judge,
    name: str,
    *,
    data_dir: str | Path,
    cache_dir: str | Path,
    out: str | Path,
    seed: int = 0,
    n_bootstrap: int = 2000,
) -> dict[str, Any]:
    """Judge a generations jsonl against the AlpacaEval references; write judge/<name>.json (the contract's
    fields) and <name>.annotations.jsonl beside it. Returns the result."""
    generations_file = Path(generations_file)
    if not generations_file.exists():
        raise DataNotFoundError(f"generations file not found: {generations_file}")
    generations = sorted(read_jsonl(generations_file), key=lambda record: str(record.get("id")))
    from robustft.data.instruct import load_alpaca_eval

    rows = load_alpaca_eval(data_dir)
    pairs = pairs_from_generations(generations, rows, str(generations_file))
    annotations = annotate(pairs, judge, cache_path(cache_dir, name), seed=seed)
    stats = win_rate_summary([a["preference"] for a in annotations], n_bootstrap=n_bootstrap, seed=seed)

    def position_rate(first: bool) -> float | None:
        chosen = [
            a["preference"] for a in annotations if a["model_first"] == first and a["preference"] is not None
        ]
        return sum(p - 1 for p in chosen) / len(chosen) * 100 if chosen else None

    result = {
        "judge": judge.describe(name),
        "judge_settings": judge.settings(),
        **stats,
        "length_controlled_win_rate": None,
        "length_controlled_reason": LENGTH_CONTROLLED_REASON,
        "reference_generator": REFERENCE_GENERATOR,
        "n_reference": len(rows),
        "avg_length": sum(len(p.output) for p in pairs) / len(pairs) if pairs else None,
        "reference_avg_length": sum(len(p.reference) for p in pairs) / len(pairs) if pairs else None,
        # position bias check: the win rate when the model's output was shown first vs second
        "position": {
            "n_model_first": sum(a["model_first"] for a in annotations),
            "win_rate_model_first": position_rate(True),
            "win_rate_model_second": position_rate(False),
            "seed": seed,
        },
        "n_cached": sum(a["cached"] for a in annotations),
        "generations": str(generations_file),
    }
    out = Path(out)
    lines = "".join(json.dumps(a, sort_keys=True, ensure_ascii=False) + "\n" for a in annotations)
    write_text_atomic(out.with_suffix(".annotations.jsonl"), lines)
    write_json_atomic(out, result)
    return result


# ------------------------------------------------------------------------------------------------- CLI


def cmd_judge(args: argparse.Namespace) -> int:
    if not isinstance(args.judge_config, dict):
        raise RunError(f"--judge-config must be a JSON object, got {args.judge_config!r}")
    judge = build_judge(args.judge_config)
    result = judge_generations(
        args.generations,
        judge,
        args.name,
        data_dir=args.data_dir,
        cache_dir=args.cache,
        out=args.out,
        seed=args.seed,
        n_bootstrap=args.n_bootstrap,
    )
    keys = (
        "n",
        "win_rate",
        "ci_low",
        "ci_high",
        "standard_error",
        "n_wins",
        "n_losses",
        "n_draws",
        "n_invalid",
    )
    print(json.dumps({"judge": args.name, **{k: result[k] for k in keys}}, indent=2))
    return 0
