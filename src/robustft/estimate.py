"""`robustft estimate`: the bill of a workflow config before it is launched, from the jobs its DAG would
schedule (the same grids the Snakefile enumerates: run_grid, xtreme_grid, instruct_grid) and a throughput
per model kind and precision.

Job cost = STARTUP_S + training examples x epochs x passes / throughput + evaluation + checkpoint writes:
- throughput: examples/s of a reference model on one GPU, from a `robustft gpu-check` JSON when given (the
  measured path of the same kind and precision), else from ASSUMED_THROUGHPUT, whose rows say they are
  assumed. Other models are scaled from the reference by model FLOPs per example (the check's formula,
  robustft.gpu_check.FLOPS_FORMULA, on ARCHITECTURES): the same achieved FLOP/s is assumed.
- an encoder batch shorter than the reference's length is assumed no faster (a base model's small batches
  leave a GPU waiting on kernel launches); a causal LM's cost follows its tokens.
- passes: a method's forward and backward passes per example (methods.settings.method_passes;
  fine-tuning is 1).
- evaluation: the examples scored, at a third of a training example's FLOPs (a forward alone).
- checkpoints: 12 bytes per parameter (fp32 weights and Adam's two moments) at the shared storage rate
  job_resources assumes.
Dataset sizes and typical lengths are tables here, each row with its source. Wall time at N GPUs is the
larger of GPU-hours / N and the longest chain of dependent jobs; queueing is not included, nor results
already on disk (the estimate is of a fresh run, as `snakemake -n -F` lists it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robustft.data import split_task_variant
from robustft.errors import DataFormatError
from robustft.gpu_check import Architecture
from robustft.job_resources import CHECKPOINT_WRITE_BYTES_PER_S
from robustft.methods.settings import method_passes
from robustft.reference import GLUE_SPLIT_SIZES
from robustft.workflow_config import (
    RETRIEVAL_TASKS,
    instruct_grid,
    recipe_settings,
    run_grid,
    train_settings,
    xtreme_grid,
    xtreme_run_settings,
    xtreme_train_settings,
)

ASSUMED = "assumed, not measured"
STARTUP_S = 120.0  # every job: interpreter, torch and CUDA start, loading the model and data, writing files
CHECKPOINT_BYTES_PER_PARAMETER = 12  # fp32 weights and Adam's two moments (full fine-tuning)
RECOMPUTE = 4 / 3  # gradient checkpointing runs each forward twice: 4 passes' FLOPs where training has 3


@dataclass(frozen=True)
class Throughput:
    """Training examples per second of a reference model on one GPU, and where the number comes from."""

    kind: str  # encoder | causal-lm
    precision: str  # bf16 | fp16 | fp32
    adapter: str  # full | qlora
    model: str
    architecture: Architecture
    sequence_length: int
    batch_size: int
    examples_per_s: float
    source: str
    measured: bool
    gradient_checkpointing: bool = False
    weight_gradients: bool = True

    @property
    def achieved_flops(self) -> float:
        """FLOP/s the reference ran at (its recomputed forwards included): what other models are priced at."""
        per_example = self.sequence_length * self.architecture.training_flops_per_token(
            self.sequence_length, self.weight_gradients
        )
        return self.examples_per_s * per_example * (RECOMPUTE if self.gradient_checkpointing else 1.0)

    def describe(self) -> str:
        rate = (
            f"{self.examples_per_s:,.1f} examples/s"
            if self.kind == "encoder"
            else (f"{self.examples_per_s * self.sequence_length:,.0f} tokens/s")
        )
        extras = " with gradient checkpointing" if self.gradient_checkpointing else ""
        return (
            f"{self.kind} {self.precision} {self.adapter}: {self.model}, {rate} at {self.sequence_length} "
            f"tokens, batch {self.batch_size}{extras} ({self.source})"
        )


# Sizes from each model's config.json on the Hub (layers, hidden, MLP width, key/value width, gated MLP,
# vocabulary of a causal LM's output layer).
_BASE = Architecture(12, 768, 3072, 768)
_LARGE = Architecture(24, 1024, 4096, 1024)
_LLAMA_7B = Architecture(32, 4096, 11008, 4096, True, 32000)
ARCHITECTURES: dict[str, Architecture] = {
    "minilm-l6": Architecture(6, 384, 1536, 384),
    "bert-base": _BASE,
    "xlnet-base": _BASE,
    "roberta-base": _BASE,
    "electra-base": _BASE,
    "xlm-r-base": _BASE,
    "roberta-large": _LARGE,
    "xlm-r-large": _LARGE,
    "xlm-r-tiny-random": Architecture(2, 32, 64, 32),
    "smollm2-135m": Architecture(30, 576, 1536, 192, True, 49152),
    "llama-2-7b": _LLAMA_7B,
    "llama-2-7b-chat": _LLAMA_7B,
    "llama-1-7b": _LLAMA_7B,
    "llama-2-13b": Architecture(40, 5120, 13824, 5120, True, 32000),
    "opt-6.7b": Architecture(32, 4096, 16384, 4096, False, 50272),
}

_PLANNING = f"{ASSUMED}: a planning figure for one H100 SXM, no GPU having been available to measure it"
ASSUMED_THROUGHPUT: tuple[Throughput, ...] = (
    Throughput("encoder", "bf16", "full", "bert-base", _BASE, 128, 32, 1000.0, _PLANNING, False),
    Throughput("encoder", "fp16", "full", "bert-base", _BASE, 128, 32, 1000.0, _PLANNING, False),
    # fp32 matmuls (no TF32) run at about 1/15 of the bf16 tensor-core peak; small batches hide part of it.
    Throughput("encoder", "fp32", "full", "bert-base", _BASE, 128, 32, 250.0, _PLANNING, False),
    # 3,000 tokens/s for 7B full fine-tuning with activation checkpointing; QLoRA half of it (de-quantising
    # every weight at every pass).
    Throughput(
        "causal-lm", "bf16", "full", "llama-2-7b", _LLAMA_7B, 512, 4, 3000 / 512, _PLANNING, False, True
    ),
    # fp32 SFT (the CPU recipes' default) at a quarter of the bf16 rate, as for the encoders.
    Throughput(
        "causal-lm", "fp32", "full", "llama-2-7b", _LLAMA_7B, 512, 4, 750 / 512, _PLANNING, False, True
    ),
    Throughput(
        "causal-lm",
        "bf16",
        "qlora",
        "llama-2-7b",
        _LLAMA_7B,
        512,
        1,
        1500 / 512,
        _PLANNING,
        False,
        True,
        False,
    ),
)


@dataclass(frozen=True)
class DataSize:
    """A task's training examples, the examples one evaluation scores, and the typical padded length of a
    training batch in tokens (the longest example of a batch, capped by the run's max_seq_length)."""

    train: int
    eval: int
    length: int
    source: str


_GLUE_SOURCE = "nyu-mll/glue split sizes (robustft.reference.GLUE_SPLIT_SIZES)"
_LENGTH_SOURCE = f"lengths {ASSUMED}: the longest of 32 examples, guessed from the task's sentence lengths"
# Typical padded batch length of each classification task, in WordPiece/BPE tokens.
TASK_LENGTHS = {
    "cola": 32,
    "sst2": 64,
    "mrpc": 96,
    "stsb": 80,
    "qqp": 96,
    "mnli": 128,
    "qnli": 160,
    "rte": 256,
    "wnli": 96,
    "snli": 64,
    "scitail": 96,
    "anli": 192,
}
TASK_SIZES: dict[str, DataSize] = {
    task: DataSize(train, dev + (9832 if task == "mnli" else 0), TASK_LENGTHS[task], _GLUE_SOURCE)
    for task, (train, dev) in GLUE_SPLIT_SIZES.items()
} | {
    "snli": DataSize(549_367, 9_842 + 9_824, 64, "stanfordnlp/snli without its no-gold rows (SMART Table 5)"),
    "scitail": DataSize(23_596, 1_304 + 2_126, 96, "allenai/scitail snli_format (SMART Table 5)"),
    # ANLI (facebook/anli): train R1 16,946, R2 45,460, R3 100,459; dev and test 1,000 / 1,000 / 1,200.
    "anli": DataSize(162_865, 2 * 2 * 3_200, 192, "facebook/anli: all rounds, and each round's dev and test"),
    "anli_r1": DataSize(16_946, 2_000, 192, "facebook/anli round 1"),
    "anli_r2": DataSize(45_460, 2_000, 192, "facebook/anli round 2"),
    "anli_r3": DataSize(100_459, 2_400, 192, "facebook/anli round 3"),
}


@dataclass(frozen=True)
class XtremeSize:
    """An XTREME task's training sets (zero-shot: English; translate-train-all: English plus one machine
    translation per language), English dev set, test examples over all languages, typical batch length."""

    train: int
    translate_train_all: int
    dev: int
    test: int
    length: int
    source: str


_XTREME_SOURCE = "XTREME (Hu et al. 2020) Table 1"
XTREME_SIZES: dict[str, XtremeSize] = {
    "xnli": XtremeSize(
        392_702, 15 * 392_702, 2_490, 15 * 5_010, 128, f"{_XTREME_SOURCE}; MNLI + 14 translations"
    ),
    "pawsx": XtremeSize(49_401, 7 * 49_401, 2_000, 7 * 2_000, 128, f"{_XTREME_SOURCE}; + 6 translations"),
    # No translations released: translate-train-all trains on English (english_only_translate_train).
    "udpos": XtremeSize(21_253, 21_253, 3_974, 150_000, 128, f"{_XTREME_SOURCE}; test total approximate"),
    "panx": XtremeSize(20_000, 20_000, 10_000, 200_000, 128, f"{_XTREME_SOURCE}; test total approximate"),
    # The QA tasks train on SQuAD v1.1 (87,599); translate-train-all adds its 10 XTREME translations, and
    # TyDiQA-GoldP's own English train set (3,696) with its 8 translations.
    "xquad": XtremeSize(87_599, 11 * 87_599, 10_570, 11 * 1_190, 384, f"{_XTREME_SOURCE}; SQuAD v1.1"),
    "mlqa": XtremeSize(87_599, 11 * 87_599, 10_570, 42_245, 384, f"{_XTREME_SOURCE}; SQuAD v1.1"),
    "tydiqa": XtremeSize(87_599, 9 * 3_696, 10_570, 5_077, 384, f"{_XTREME_SOURCE}; SQuAD v1.1 / TyDiQA"),
}
# Retrieval runs train nothing; they encode and mine with the XNLI run's encoder, holding a GPU meanwhile.
RETRIEVAL_MINUTES = {"bucc2018": 60.0, "tatoeba": 5.0}
RETRIEVAL_SOURCE = f"{ASSUMED}: BUCC's exact numpy mining about an hour at full size, Tatoeba minutes"


@dataclass(frozen=True)
class InstructSize:
    examples: int
    tokens: int  # mean tokens of an example (prompt and completion), before the max_seq_length cap
    source: str


INSTRUCT_SIZES: dict[str, InstructSize] = {
    "alpaca": InstructSize(52_002, 300, f"tatsu-lab/alpaca rows; tokens {ASSUMED}"),
    "alpaca_seed": InstructSize(175, 100, f"the Self-Instruct seed tasks; tokens {ASSUMED}"),
    "evol_instruct": InstructSize(70_000, 512, f"WizardLM_evol_instruct_70k rows; tokens {ASSUMED}"),
    # One example per assistant turn of a 512-token chunk, its prompt the chunk's turns before it: on
    # average about two thirds of the chunk.
    "sharegpt": InstructSize(
        280_000, 350, f"{ASSUMED}: ~94k conversations, ~3 assistant turns each (one example per turn)"
    ),
    "open_platypus": InstructSize(24_926, 400, f"garage-bAInd/Open-Platypus rows; tokens {ASSUMED}"),
}

ALPACA_EVAL_PROMPTS = 805
# Decoding is bound by reading the weights once per step: bf16 bytes at an effective bandwidth, plus the
# per-step overhead of transformers' generate. Every batch is priced at max_new_tokens (an upper bound).
DECODE_BYTES_PER_S = 1.0e12
DECODE_STEP_OVERHEAD_S = 0.02
GENERATION_SOURCE = (
    f"{ASSUMED}: a decode step reads the bf16 weights at {DECODE_BYTES_PER_S / 1e12:g} TB/s plus "
    f"{DECODE_STEP_OVERHEAD_S * 1000:g} ms; every batch runs to max_new_tokens"
)
# lm-eval: (documents, tokens scored per document: choices x (few-shot context + continuation)).
LEADERBOARD_TOKENS = {
    "arc_challenge": (1_172, 4 * 1_300),  # 25-shot
    "hellaswag": (10_042, 4 * 1_200),  # 10-shot
    "mmlu": (14_042, 4 * 600),  # 5-shot
    "truthfulqa_mc2": (817, 8 * 300),  # 0-shot with its QA primer
}
LEADERBOARD_SOURCE = f"documents of each task's scored split; tokens per document {ASSUMED}"
JUDGE_TOKENS = 1_500  # a pairwise judging prompt: instruction and two answers
API_JUDGE_S = 2.0  # one API judgement, wall time
TEXT_STATS_S = 60.0  # text statistics and overlap: CPU jobs
# Assumed, not measured: one embedding-analysis job (NEFTune Figures 6 and 8, or Figure 7) beyond start-up.
# Timed pieces on 2 CPU cores put the CPU config's at about 5 CPU minutes; a 7B vocabulary on a GPU is
# taken as the same order.
EMBEDDING_ANALYSIS_S = 600.0


@dataclass(frozen=True)
class Job:
    """One scheduled job: its rule, wall seconds, the GPUs it holds, and the jobs it waits for. A compute
    job of a config without GPUs (gpus_per_run: 0) holds a CPU job slot instead; light jobs (API calls,
    text statistics, tables and reports) hold neither."""

    rule: str
    key: str
    seconds: float
    gpus: int
    after: tuple[str, ...] = ()
    compute: bool = True

    @property
    def slots(self) -> int:
        """The GPUs it holds, or the one CPU slot of a compute job without a GPU."""
        return max(self.gpus, 1) if self.compute else self.gpus


def measured_throughputs(report: dict[str, Any], source: str) -> list[Throughput]:
    """The single-GPU training paths a `robustft gpu-check` report passed, as Throughputs."""
    try:
        mode, device, paths = report["mode"], report["device"], report["paths"]
        found = []
        for path in paths:
            if path["status"] != "pass" or path["kind"] not in ("classification", "sft", "qlora"):
                continue
            where = f"measured by robustft gpu-check ({mode}) on {device}, path '{path['name']}', {source}"
            found.append(
                Throughput(
                    kind="encoder" if path["kind"] == "classification" else "causal-lm",
                    precision=path["precision"],
                    adapter="qlora" if path["kind"] == "qlora" else "full",
                    model=path["model"],
                    architecture=Architecture(**path["architecture"]),
                    sequence_length=int(path["sequence_length"]),
                    batch_size=int(path["batch_size"]),
                    examples_per_s=float(path["examples_per_s"]) / int(path["gpus"]),
                    source=where + (f" ({path['note']})" if path.get("note") else ""),
                    measured=True,
                    weight_gradients=bool(path.get("weight_gradients", True)),
                )
            )
    except (KeyError, TypeError, ValueError) as err:
        raise DataFormatError(
            f"{source}: not a robustft gpu-check report ({type(err).__name__}: {err})"
        ) from err
    return found


def load_check(path: str | Path) -> list[Throughput]:
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataFormatError(f"{path}: cannot read the gpu-check report ({err})") from err
    return measured_throughputs(report, str(path))


class Rates:
    """Picks the reference throughput of each (kind, precision, adapter): a measured one when the check
    has it (the largest model of that kind: the closest to the configs' models), else the assumed table's.
    Remembers which it used, so the estimate lists exactly its inputs."""

    def __init__(self, measured: Iterable[Throughput] = (), table: Iterable[Throughput] = ASSUMED_THROUGHPUT):
        self.measured, self.table = list(measured), list(table)
        self.used: dict[tuple[str, str, str], Throughput] = {}

    def reference(self, kind: str, precision: str, adapter: str = "full") -> Throughput:
        key = (kind, precision, adapter)
        if key not in self.used:
            for rows in (self.measured, self.table):
                matching = [row for row in rows if (row.kind, row.precision, row.adapter) == key]
                if matching:
                    self.used[key] = max(matching, key=lambda row: row.architecture.matmul_parameters)
                    break
            else:
                raise KeyError(
                    f"no throughput for a {kind} in {precision} ({adapter}): measure one with `robustft "
                    "gpu-check` and pass --check, or add a row to robustft.estimate.ASSUMED_THROUGHPUT"
                )
        return self.used[key]

    def train_seconds(
        self,
        reference: Throughput,
        target: Architecture,
        length: int,
        examples: float,
        *,
        weight_gradients: bool = True,
        gradient_checkpointing: bool = False,
    ) -> float:
        """Seconds to train `target` on `examples` of `length` tokens at the reference's FLOP/s."""
        if reference.kind == "encoder":
            length = max(length, reference.sequence_length)
        flops = length * target.training_flops_per_token(length, weight_gradients)
        return examples * flops * (RECOMPUTE if gradient_checkpointing else 1.0) / reference.achieved_flops

    def forward_seconds(
        self, reference: Throughput, target: Architecture, length: int, examples: float
    ) -> float:
        """A forward alone: a third of a training step's FLOPs (2 of 6 per weight, 4 of 12 for attention)."""
        return self.train_seconds(reference, target, length, examples) / 3


def architecture(model: str, cache_dir: str | None = None) -> Architecture:
    """A model's sizes: ARCHITECTURES, else its config.json (a Hub id or folder, from the cache)."""
    if model in ARCHITECTURES:
        return ARCHITECTURES[model]
    from transformers import AutoConfig

    from robustft.models import get_model_spec

    try:
        spec = get_model_spec(model, cache_dir)
        config = AutoConfig.from_pretrained(spec.location(), cache_dir=cache_dir, trust_remote_code=False)
        return Architecture.from_config(config, causal_lm=spec.kind == "causal-lm")
    except (OSError, ValueError, AttributeError) as err:
        raise KeyError(
            f"model {model!r}: its sizes are not in robustft.estimate.ARCHITECTURES and its config.json "
            f"cannot be read ({type(err).__name__}: {err})"
        ) from err


def model_parameters(model: str, cache_dir: str | None = None) -> int:
    from robustft.models import MODELS

    spec = MODELS.get(model)
    return spec.parameters if spec and spec.parameters else architecture(model, cache_dir).matmul_parameters


def checkpoint_seconds(steps: float, checkpoint_steps: int, parameters: int, full: bool = True) -> float:
    if not checkpoint_steps or not full:
        return 0.0
    return (
        math.floor(steps / checkpoint_steps)
        * CHECKPOINT_BYTES_PER_PARAMETER
        * parameters
        / (CHECKPOINT_WRITE_BYTES_PER_S)
    )


def resolved_precision(precision: str) -> str:
    """`auto` trains in bf16 on a GPU that has it (every GPU of the peak table does)."""
    return "bf16" if precision == "auto" else precision


@dataclass(frozen=True)
class EncoderRun:
    """What an encoder run (GLUE or XTREME) trains and scores: enough to price it."""

    model: str
    precision: str
    components: dict[str, Any] | None
    length: int
    train_examples: float  # per epoch
    epochs: float
    eval_examples: float  # all evaluations together
    batch_size: int
    checkpoint_steps: int


def encoder_seconds(run: EncoderRun, rates: Rates, cache_dir: str | None) -> float:
    """Compute seconds of an encoder run on one GPU: training passes, evaluation, checkpoint writes."""
    target = architecture(run.model, cache_dir)
    precision = resolved_precision(run.precision)
    reference = rates.reference("encoder", precision)
    passes, fp32_passes = method_passes(run.components, precision)
    examples = run.train_examples * run.epochs
    seconds = passes * rates.train_seconds(reference, target, run.length, examples)
    if fp32_passes:
        fp32 = rates.reference("encoder", "fp32")
        seconds += fp32_passes * rates.train_seconds(fp32, target, run.length, examples)
    seconds += rates.forward_seconds(reference, target, run.length, run.eval_examples)
    steps = math.ceil(run.train_examples / run.batch_size) * run.epochs
    return seconds + checkpoint_seconds(steps, run.checkpoint_steps, model_parameters(run.model, cache_dir))


def capped(size: float, cap: int | None) -> float:
    return size if cap is None else min(size, cap)


def task_size(task: str) -> DataSize:
    if task not in TASK_SIZES:
        raise KeyError(
            f"task {task!r}: its size is not in robustft.estimate.TASK_SIZES; add a row with its source"
        )
    return TASK_SIZES[task]


def glue_jobs(config: dict[str, Any], rates: Rates) -> list[Job]:
    """The `train` rule's jobs: one per (model, task, method, seed) of run_grid."""
    from robustft.train.config import TrainConfig

    defaults, gpus, jobs = vars(TrainConfig()), config["gpus_per_run"], []
    for model, task, method, seed in run_grid(config):
        settings = {**defaults, **train_settings(config, task)}
        base, fraction = split_task_variant(task)
        size = task_size(base)
        length = settings["max_seq_length"]
        run = EncoderRun(
            model=model,
            precision=settings["precision"],
            components=config["methods"][method],
            length=length if settings["pad_to_max_length"] else min(length, size.length),
            train_examples=math.floor(capped(size.train, settings["max_train_samples"]) * (fraction or 1.0)),
            epochs=settings["epochs"],
            eval_examples=evaluated_examples(size.eval, settings),
            batch_size=settings["batch_size"],
            checkpoint_steps=settings["checkpoint_steps"],
        )
        seconds = encoder_seconds(run, rates, config["cache_dir"])
        jobs.append(
            Job("train", f"train/{model}/{task}/{method}/{seed}", STARTUP_S + seconds / max(gpus, 1), gpus)
        )
    return jobs


def evaluated_examples(dev_size: int, settings: dict[str, Any]) -> int:
    """Examples a GLUE run scores in its dev evaluations: one per started epoch, the last on the whole
    (capped) split and the earlier ones on `curve_eval_samples` of it where that is set."""
    whole = capped(dev_size, settings["max_eval_samples"])
    earlier = math.ceil(settings["epochs"]) - 1
    curve = settings.get("curve_eval_samples")
    return whole + earlier * (whole if curve is None else min(curve, whole))


def train_priorities(config: dict[str, Any]) -> dict[tuple[str, str], int]:
    """The `train` rule's job priorities: per (task, method) of the GLUE grid, its rank by expected work,
    the longest first (Snakemake starts higher priorities first). On a machine that runs a few jobs at a
    time, the last jobs then are short ones, instead of one long run training alone while the other cores
    idle (the demo's last STS-B run did, for 3 of its 17 minutes).

    Work is the same arithmetic as the estimate on any device: training examples x epochs x the method's
    passes x the task's typical batch length, plus the evaluations' forward passes; the model and seed do
    not change the order among a config's runs. A task without a size row ranks first."""
    from robustft.train.config import TrainConfig

    defaults, work = vars(TrainConfig()), {}
    for task, method in dict.fromkeys((task, method) for _, task, method, _ in run_grid(config)):
        settings = {**defaults, **train_settings(config, task)}
        base, fraction = split_task_variant(task)
        if base not in TASK_SIZES:
            work[task, method] = math.inf
            continue
        size = TASK_SIZES[base]
        length = (
            settings["max_seq_length"]
            if settings["pad_to_max_length"]
            else min(settings["max_seq_length"], size.length)
        )
        passes, fp32_passes = method_passes(
            config["methods"][method], resolved_precision(settings["precision"])
        )
        examples = capped(size.train, settings["max_train_samples"]) * (fraction or 1.0) * settings["epochs"]
        evaluations = evaluated_examples(size.eval, settings)
        work[task, method] = length * (examples * (passes + fp32_passes) + evaluations / 3)
    ordered = sorted(work, key=work.__getitem__)
    return {key: rank for rank, key in enumerate(ordered)}


def xtreme_training_examples(task: str, setting: str, train_split: str) -> tuple[XtremeSize, int]:
    if task not in XTREME_SIZES:
        raise KeyError(f"XTREME task {task!r}: its size is not in robustft.estimate.XTREME_SIZES")
    size = XTREME_SIZES[task]
    if train_split == "dev":
        return size, size.dev
    return size, size.translate_train_all if setting == "translate-train-all" else size.train


def xtreme_jobs(config: dict[str, Any], rates: Rates) -> list[Job]:
    """`xtreme_train` per trained run; `xtreme_retrieve` per BUCC/Tatoeba run, after its XNLI run."""
    from robustft.train.config import TrainConfig

    block, defaults, jobs = config["xtreme"], vars(TrainConfig()), []
    gpus = block["gpus_per_run"]
    for model, task, setting, method, seed in xtreme_grid(config):
        if task in RETRIEVAL_TASKS:
            xnli = f"xtreme_train/{model}/xnli/{setting}/{method}/{seed}"
            key = f"xtreme_retrieve/{model}/{task}/{setting}/{method}/{seed}"
            jobs.append(Job("xtreme_retrieve", key, 60 * RETRIEVAL_MINUTES[task], min(gpus, 1), (xnli,)))
            continue
        settings = {**defaults, **xtreme_train_settings(config, model, task, setting)}
        run_settings = {"train_split": "train", **xtreme_run_settings(config, task)}
        size, examples = xtreme_training_examples(task, setting, run_settings["train_split"])
        run = EncoderRun(
            model=model,
            precision=settings["precision"],
            components=config["methods"][method],
            length=min(settings["max_seq_length"], size.length),
            train_examples=capped(examples, settings["max_train_samples"]),
            epochs=settings["epochs"],
            eval_examples=capped(size.test, settings["max_eval_samples"]),
            batch_size=settings["batch_size"],
            checkpoint_steps=settings["checkpoint_steps"],
        )
        seconds = encoder_seconds(run, rates, config["cache_dir"])
        key = f"xtreme_train/{model}/{task}/{setting}/{method}/{seed}"
        jobs.append(Job("xtreme_train", key, STARTUP_S + seconds / max(gpus, 1), gpus))
    return jobs


def instruct_size(dataset: str) -> InstructSize:
    if dataset not in INSTRUCT_SIZES:
        raise KeyError(f"dataset {dataset!r}: its size is not in robustft.estimate.INSTRUCT_SIZES")
    return INSTRUCT_SIZES[dataset]


def sft_seconds(
    config: dict[str, Any], model: str, dataset: str, recipe: str, method: str, rates: Rates
) -> float:
    """Compute seconds of one SFT run on one GPU: training, the noise-free evaluations, checkpoint writes."""
    from robustft.train.sft import SFTSettings

    settings = {**vars(SFTSettings()), **recipe_settings(config, recipe)}
    size, cache_dir = instruct_size(dataset), config["cache_dir"]
    held_out = settings["heldout_size"] if settings["heldout_dataset"] in (None, dataset) else 0
    examples = capped(size.examples - held_out, settings["max_train_samples"])
    per_step = (
        settings["batch_size"]
        * settings["gradient_accumulation_steps"]
        * max(config["instruct"]["gpus_per_run"], 1)
    )
    if settings["max_steps"]:
        steps, trained = settings["max_steps"], settings["max_steps"] * per_step
    else:
        steps, trained = math.ceil(examples / per_step) * settings["epochs"], examples * settings["epochs"]
    adapter, precision = settings["adapter"], resolved_precision(settings["precision"])
    reference = rates.reference("causal-lm", precision, "qlora" if adapter == "qlora" else "full")
    target, length = architecture(model, cache_dir), min(settings["max_seq_length"], size.tokens)
    passes, _ = method_passes(config["methods"][method], precision)
    seconds = passes * rates.train_seconds(
        reference,
        target,
        length,
        trained,
        weight_gradients=adapter == "full",
        gradient_checkpointing=settings["gradient_checkpointing"],
    )
    evaluations = (
        steps // settings["eval_steps"] if settings["eval_steps"] else math.ceil(settings["epochs"])
    ) + 1
    scored = evaluations * (settings["heldout_size"] + settings["eval_train_samples"])
    seconds += rates.forward_seconds(reference, target, length, scored)
    parameters = model_parameters(model, cache_dir)
    return seconds + checkpoint_seconds(steps, settings["checkpoint_steps"], parameters, adapter == "full")


def generation_seconds(parameters: int, prompts: int, batch_size: int, max_new_tokens: int) -> float:
    step = 2 * parameters / DECODE_BYTES_PER_S + DECODE_STEP_OVERHEAD_S
    return math.ceil(prompts / batch_size) * max_new_tokens * step


def instruct_prompt_sets(block: dict[str, Any]) -> dict[str, int]:
    """The prompt sets the `generate` rule runs per run, with their number of prompts (as common.smk)."""
    generation = block["generation"]
    sets = {"alpaca_eval": min(generation["max_prompts"] or ALPACA_EVAL_PROMPTS, ALPACA_EVAL_PROMPTS)}
    if generation["train_prompts"]:
        sets["train_prompts"] = generation["train_prompts"]
    return sets


def leaderboard_seconds(task: str, limit: int | None, target: Architecture, rates: Rates) -> float:
    if task not in LEADERBOARD_TOKENS:
        raise KeyError(f"leaderboard task {task!r}: its size is not in robustft.estimate.LEADERBOARD_TOKENS")
    documents, tokens = LEADERBOARD_TOKENS[task]
    scored = capped(documents, limit) * tokens
    # Priced per token: a 1,024-token window's attention, `scored` tokens of one-token "examples".
    reference = rates.reference("causal-lm", "bf16")
    per_token = target.training_flops_per_token(1024) / 3
    return scored * per_token / reference.achieved_flops


def judge_job(
    run_key: str,
    name: str,
    settings: dict[str, Any],
    prompts: int,
    gpus: int,
    rates: Rates,
    cache_dir,
    generations: str = "alpaca_eval",
) -> Job:
    """A judge of one run's AlpacaEval generations (`generations`: alpaca_eval, or variants/<name> for a
    generation variant, judged by the rules judge_variant / judge_api_variant): a local model's forwards
    on a GPU, or API calls."""
    from robustft.evals.judges import build_judge, judge_needs_network

    after = (f"generate/{run_key}/{generations}",)
    plain = generations == "alpaca_eval"
    suffix, job_key = ("", f"{run_key}/{name}") if plain else ("_variant", f"{run_key}/{generations}/{name}")
    if judge_needs_network(settings):
        seconds = prompts * API_JUDGE_S / max(int(settings.get("workers", 1)), 1)
        return Job(f"judge_api{suffix}", f"judge_api/{job_key}", seconds, 0, after, compute=False)
    target = architecture(build_judge(settings).model, cache_dir)
    seconds = rates.forward_seconds(rates.reference("causal-lm", "bf16"), target, JUDGE_TOKENS, prompts)
    return Job(f"judge{suffix}", f"judge/{job_key}", STARTUP_S + seconds, gpus, after)


def variant_jobs(
    config: dict[str, Any], run: tuple[str, str, str, str, int], gpus: int, rates: Rates
) -> list[Job]:
    """The generation variants of one run (NEFTune Tables 5 and 10: instruct_variants): each generated on
    its AlpacaEval prompts (priced as the plain generation: every batch to max_new_tokens) and judged by
    every judge."""
    from robustft.workflow_config import instruct_variants

    block, cache_dir = config["instruct"], config["cache_dir"]
    generation, run_key = block["generation"], "/".join(map(str, run))
    jobs = []
    for variant in instruct_variants(config).get(run, []):
        settings = generation["variants"][variant]
        prompts = min(
            settings.get("max_prompts") or instruct_prompt_sets(block)["alpaca_eval"], ALPACA_EVAL_PROMPTS
        )
        seconds = generation_seconds(
            model_parameters(run[0], cache_dir),
            prompts,
            generation["batch_size"],
            generation["max_new_tokens"],
        )
        generate = f"generate/{run_key}/variants/{variant}"
        jobs.append(Job("generate_variant", generate, STARTUP_S + seconds, gpus, (f"sft/{run_key}",)))
        for name, judge in block["judges"].items():
            jobs.append(
                judge_job(run_key, name, judge, prompts, gpus, rates, cache_dir, f"variants/{variant}")
            )
    return jobs


def instruct_jobs(config: dict[str, Any], rates: Rates) -> list[Job]:
    """Per run of instruct_grid: sft, then generate per prompt set, the judges, the generation variants and
    their judges, lm_eval per task, and the text statistics (common.smk's instruct_run_outputs)."""
    block, cache_dir = config["instruct"], config["cache_dir"]
    gpus, eval_gpus = block["gpus_per_run"], min(block["gpus_per_run"], 1)
    generation, leaderboard, jobs = block["generation"], block["leaderboard"], []
    for model, dataset, recipe, method, seed in instruct_grid(config):
        run = f"{model}/{dataset}/{recipe}/{method}/{seed}"
        sft = f"sft/{run}"
        seconds = sft_seconds(config, model, dataset, recipe, method, rates)
        jobs.append(Job("sft", sft, STARTUP_S + seconds / max(gpus, 1), gpus))
        parameters = model_parameters(model, cache_dir)
        prompt_sets = instruct_prompt_sets(block)
        for prompts, count in prompt_sets.items():
            seconds = generation_seconds(
                parameters, count, generation["batch_size"], generation["max_new_tokens"]
            )
            jobs.append(Job("generate", f"generate/{run}/{prompts}", STARTUP_S + seconds, eval_gpus, (sft,)))
        for name, settings in block["judges"].items():
            jobs.append(
                judge_job(run, name, settings, prompt_sets["alpaca_eval"], eval_gpus, rates, cache_dir)
            )
        jobs += variant_jobs(config, (model, dataset, recipe, method, seed), eval_gpus, rates)
        target = architecture(model, cache_dir)
        for task in leaderboard["tasks"]:
            seconds = leaderboard_seconds(task, leaderboard["limit"], target, rates)
            jobs.append(Job("lm_eval", f"lm_eval/{run}/{task}", STARTUP_S + seconds, eval_gpus, (sft,)))
        after = (f"generate/{run}/alpaca_eval",)
        jobs.append(Job("text_stats", f"text_stats/{run}", TEXT_STATS_S, 0, after, compute=False))
        if "train_prompts" in prompt_sets:
            after = (f"generate/{run}/train_prompts",)
            jobs.append(Job("overlap", f"overlap/{run}", TEXT_STATS_S, 0, after, compute=False))
    return jobs


def embedding_jobs(config: dict[str, Any], tables: set[str]) -> list[Job]:
    """The NEFTune embedding analyses (Figures 6-8): one job per table they read, on at most one GPU."""
    gpus = min(int(config.get("instruct", {}).get("gpus_per_run", 0)), 1)
    return [
        Job(table, f"{table}/0", STARTUP_S + EMBEDDING_ANALYSIS_S, gpus)
        for table in ("embedding_flips", "embedding_spectra")
        if table in tables
    ]


def bookkeeping_jobs(config: dict[str, Any]) -> list[Job]:
    """The local rules that collect tables and typeset reports, and `all`: seconds each, no GPU; and the
    embedding analyses that the instruction-tuning artifacts read."""
    from robustft.artifacts.index import ARTIFACT_TABLES, INSTRUCT_TABLES

    tracks = config["tracks"]
    paper_report = "glue" in tracks or "xtreme" in tracks
    artifacts = [
        key
        for key in config["artifacts"]
        if (ARTIFACT_TABLES[key] in INSTRUCT_TABLES and "instruct" in tracks)
        or (ARTIFACT_TABLES[key] not in INSTRUCT_TABLES and paper_report)
    ]
    tables = {ARTIFACT_TABLES[key] for key in artifacts}
    tables |= {
        table
        for table, track in (("runs", "glue"), ("xtreme", "xtreme"), ("instruct", "instruct"))
        if track in tracks
    }
    rules = [
        rule
        for rule, table in (
            ("aggregate", "runs"),
            ("collect_xtreme", "xtreme"),
            ("collect_instruct", "instruct"),
        )
        if table in tables
    ]
    rules += ["artifact"] * len(artifacts)
    rules += ["report"] * paper_report + ["instruct_report"] * ("instruct" in tracks) + ["all"]
    bookkeeping = [Job(rule, f"{rule}/{index}", 0.0, 0, compute=False) for index, rule in enumerate(rules)]
    return embedding_jobs(config, tables) + bookkeeping


def scheduled_jobs(config: dict[str, Any], rates: Rates) -> list[Job]:
    """Every job `snakemake -n -F` would list for `config`, each priced."""
    tracks, jobs = config["tracks"], []
    if "glue" in tracks:
        jobs += glue_jobs(config, rates)
    if "xtreme" in tracks:
        jobs += xtreme_jobs(config, rates)
    if "instruct" in tracks:
        jobs += instruct_jobs(config, rates)
    return jobs + bookkeeping_jobs(config)


def longest_chain_seconds(jobs: list[Job]) -> float:
    """The longest run of jobs that wait for each other: no number of GPUs finishes sooner."""
    by_key = {job.key: job for job in jobs}
    finish: dict[str, float] = {}

    def finished(key: str) -> float:
        if key not in finish:
            job = by_key[key]
            finish[key] = job.seconds + max((finished(k) for k in job.after if k in by_key), default=0.0)
        return finish[key]

    return max((finished(job.key) for job in jobs), default=0.0)


# The rules in the order the DAG runs them; any other rule a future workflow adds is listed after these.
RULE_ORDER = (
    "train",
    "xtreme_train",
    "xtreme_retrieve",
    "sft",
    "generate",
    "judge",
    "judge_api",
    "generate_variant",
    "judge_variant",
    "judge_api_variant",
    "lm_eval",
    "text_stats",
    "overlap",
    "embedding_flips",
    "embedding_spectra",
    "aggregate",
    "collect_xtreme",
    "collect_instruct",
    "artifact",
    "report",
    "instruct_report",
    "all",
)


@dataclass(frozen=True)
class RuleTotal:
    """The jobs of one rule together."""

    rule: str
    jobs: int
    gpus_per_job: int
    job_hours: float
    gpu_hours: float
    slot_hours: float  # GPU-hours, and the hours of compute jobs without a GPU (Job.slots)
    longest_hours: float

    def wall_hours(self, gpus: int) -> float:
        """The rule alone on `gpus` GPUs (or CPU job slots); light jobs run side by side elsewhere."""
        return max(self.slot_hours / gpus, self.longest_hours)


@dataclass(frozen=True)
class Estimate:
    config: str
    gpus: int
    rules: list[RuleTotal]
    longest_chain_hours: float
    throughputs: list[Throughput]
    check: str | None

    @property
    def jobs(self) -> int:
        return sum(rule.jobs for rule in self.rules)

    @property
    def gpu_hours(self) -> float:
        return sum(rule.gpu_hours for rule in self.rules)

    @property
    def wall_hours(self) -> float:
        return max(sum(rule.slot_hours for rule in self.rules) / self.gpus, self.longest_chain_hours)


def rule_totals(jobs: list[Job]) -> list[RuleTotal]:
    names = list(
        dict.fromkeys(
            [*(rule for rule in RULE_ORDER if any(j.rule == rule for j in jobs)), *(j.rule for j in jobs)]
        )
    )
    totals = []
    for name in names:
        of_rule = [job for job in jobs if job.rule == name]
        totals.append(
            RuleTotal(
                rule=name,
                jobs=len(of_rule),
                gpus_per_job=max(job.gpus for job in of_rule),
                job_hours=sum(job.seconds for job in of_rule) / 3600,
                gpu_hours=sum(job.seconds * job.gpus for job in of_rule) / 3600,
                slot_hours=sum(job.seconds * job.slots for job in of_rule) / 3600,
                longest_hours=max(job.seconds for job in of_rule) / 3600,
            )
        )
    return totals


def estimate(
    config: dict[str, Any],
    *,
    gpus: int = 1,
    check: str | Path | None = None,
    config_name: str = "config",
    table: Iterable[Throughput] = ASSUMED_THROUGHPUT,
) -> Estimate:
    """The cost of a fresh run of `config` (validated, defaults filled in: workflow_config.load_config) on
    `gpus` GPUs, its throughputs from the gpu-check report `check` where it has them, else from `table`."""
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    rates = Rates(load_check(check) if check is not None else (), table)
    jobs = scheduled_jobs(config, rates)
    return Estimate(
        config=config_name,
        gpus=gpus,
        rules=rule_totals(jobs),
        longest_chain_hours=longest_chain_seconds(jobs) / 3600,
        throughputs=list(rates.used.values()),
        check=None if check is None else str(check),
    )


COST_MODEL = (
    f"job = {STARTUP_S:.0f} s start-up + training examples x epochs x passes / throughput + evaluation "
    "(examples scored, a third of a training example each) + checkpoint writes (12 bytes per parameter at "
    f"{CHECKPOINT_WRITE_BYTES_PER_S / 1e6:.0f} MB/s); a job on G GPUs takes 1/G of the compute"
)
WALL_MODEL = "wall time = the larger of GPU-hours / N and the longest chain of dependent jobs; no queueing"


def _hours(hours: float) -> str:
    return f"{hours * 60:.1f} min" if hours < 1 else f"{hours:,.1f} h"


def format_estimate(result: Estimate) -> str:
    """The estimate as a readable table, with every input it used."""
    plural = "s" * (result.gpus > 1)
    lines = [f"robustft estimate: {result.config}, wall time at {result.gpus} GPU{plural}"]
    lines.append("throughput (one GPU; other models scaled by model FLOPs per example):")
    lines += [f"  {row.describe()}" for row in result.throughputs]
    header = ("rule", "jobs", "GPUs/job", "hours/job", "GPU-hours", f"wall at {result.gpus} GPU{plural}")
    rows = [header]
    for rule in result.rules:
        rows.append(
            (
                rule.rule,
                f"{rule.jobs:,}",
                str(rule.gpus_per_job),
                _hours(rule.job_hours / rule.jobs),
                f"{rule.gpu_hours:,.1f}",
                _hours(rule.wall_hours(result.gpus)),
            )
        )
    rows.append(("total", f"{result.jobs:,}", "", "", f"{result.gpu_hours:,.1f}", _hours(result.wall_hours)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells))
    lines += [
        f"  {COST_MODEL}",
        f"  {WALL_MODEL}",
        f"  longest chain of dependent jobs: {_hours(result.longest_chain_hours)}",
    ]
    lines.append(
        "  dataset sizes and lengths: robustft.estimate's TASK_SIZES, XTREME_SIZES and INSTRUCT_SIZES, "
        "each row with its source"
    )
    return "\n".join(lines)


def estimate_json(result: Estimate) -> dict[str, Any]:
    return {
        "config": result.config,
        "gpus": result.gpus,
        "check": result.check,
        "jobs": result.jobs,
        "gpu_hours": result.gpu_hours,
        "wall_hours": result.wall_hours,
        "longest_chain_hours": result.longest_chain_hours,
        "rules": [{**asdict(rule), "wall_hours": rule.wall_hours(result.gpus)} for rule in result.rules],
        "throughputs": [asdict(row) for row in result.throughputs],
        "cost_model": COST_MODEL,
        "wall_model": WALL_MODEL,
    }
