"""One XTREME run: fine-tune on a task's training data in a setting, evaluate on every language.

`robustft train-xtreme` trains and evaluates the classification, tagging and QA tasks; `robustft
retrieve-xtreme` evaluates BUCC and Tatoeba on the encoder an XNLI run saved (NoisyTune Sec. 3.1 follows
Zheng et al. 2021: sentence retrieval uses the XNLI-trained model). Both write a run directory
under `results/xtreme/<model>/<task>/<setting>/<method>/seed<S>-<key>/`, metrics.json last.

The methods act exactly as in the GLUE track (RobustTrainer). Methods that add a loss on the logits or
own the training step (SMART, R3F, FreeLB) are defined for sentence classification only, so they are
refused for tagging and QA rather than applied to logits they were not written for.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robustft import provenance
from robustft.errors import RunError, RunPreempted
from robustft.io import write_json_atomic
from robustft.runs import TENSORBOARD_DIR, finish_run, prepare_run_dir, record_failure
from robustft.train.config import LATER_TRAIN_SETTINGS, TrainConfig, validate_run_inputs

logger = logging.getLogger(__name__)

ENCODER_DIR = "encoder"  # the fine-tuned XNLI model that the retrieval tasks read
RUN_FILES = ("metrics.json", "history.jsonl", "run.json", ENCODER_DIR, TENSORBOARD_DIR)  # what a run writes
# MLQA's official script normalises answers per language; XQuAD and TyDiQA-GoldP use SQuAD's.
QA_NORMALIZATION = {"mlqa": "mlqa"}


@dataclass
class XtremeSettings:
    """How a run reads and scores its data (the config's `xtreme.run` block, per task overridable)."""

    train_split: str = "train"  # "dev" trains on the English dev set (the CPU variant)
    eval_split: str = "test"
    # None: every XTREME language of the task; "local": those the data directory has files for
    eval_languages: list[str] | str | None = None
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = 30
    n_best: int = 20
    retrieval_layer: int | str = "best"  # a hidden layer (0 = embeddings), or the best one
    bucc_k: int = 4
    save_encoder: bool = False  # XNLI runs that retrieval tasks read keep their fine-tuned encoder
    # translate-train-all with no translations found (UD-POS, PAN-X): stop (False) or train on English
    english_only_translate_train: bool = False

    def validate(self) -> None:
        for name in ("train_split", "eval_split"):
            if getattr(self, name) not in ("train", "dev", "test"):
                raise RunError(
                    f"xtreme setting {name}: must be train, dev or test, got {getattr(self, name)!r}"
                )
        if isinstance(self.eval_languages, str) and self.eval_languages != "local":
            raise RunError(
                f"xtreme setting eval_languages: a list, null or 'local', got {self.eval_languages!r}"
            )
        if not (self.retrieval_layer == "best" or isinstance(self.retrieval_layer, int)):
            raise RunError(
                f"xtreme setting retrieval_layer: an integer or 'best', got {self.retrieval_layer!r}"
            )


@dataclass
class XtremeRunSpec:
    model: str
    task: str
    setting: str
    method: str
    seed: int
    train: TrainConfig = field(default_factory=TrainConfig)
    xtreme: XtremeSettings = field(default_factory=XtremeSettings)
    components: dict[str, dict[str, Any] | None] | None = None
    data_dir: str = "resources/data"
    cache_dir: str | None = None
    encoder_dir: str | None = None  # retrieval: the XNLI run's encoder/

    def validate(self):
        from robustft.data.xtreme import SETTINGS, XTREME_TASKS
        from robustft.methods import build_method
        from robustft.methods.base import overrides
        from robustft.models import get_model_spec

        get_model_spec(self.model, self.cache_dir)
        if self.task not in XTREME_TASKS:
            raise KeyError(f"unknown XTREME task {self.task!r}; known: {sorted(XTREME_TASKS)}")
        if self.setting not in SETTINGS:
            raise RunError(f"unknown XTREME setting {self.setting!r}; known: {list(SETTINGS)}")
        validate_run_inputs(self.model, self.seed, self.train, self.cache_dir)
        # GLUE-track settings an XTREME run has no use for: refused rather than silently ignored.
        unused = {
            "report_epoch": "last",
            "save_predictions": False,
            "pad_to_max_length": False,
            "group_by_length": False,
            "norm_checkpoints": 0,
            "curve_eval_samples": None,  # an XTREME run evaluates once, after training
        }
        set_here = [key for key, default in unused.items() if getattr(self.train, key) != default]
        if set_here:
            raise RunError(
                f"train setting(s) {set_here} do not apply to XTREME runs (evaluation is once, at the end)"
            )
        self.xtreme.validate()
        method = build_method(self.method, self.components)
        kind = XTREME_TASKS[self.task].kind
        logit_hooks = [
            c.name for c in method.components if overrides(c, "extra_loss") or overrides(c, "training_step")
        ]
        if kind != "classification" and logit_hooks:
            raise RunError(
                f"method {self.method!r}: {logit_hooks} act on the classification logits and are not "
                f"defined for the {kind} task {self.task}; use them on XNLI/PAWS-X only"
            )
        if kind == "retrieval" and not self.encoder_dir:
            raise RunError(f"{self.task} is evaluated on an XNLI run's encoder: pass --encoder-dir")
        return method


def _subsample(items: list[Any], limit: int | None, seed: int) -> list[Any]:
    if limit is None or limit >= len(items):
        return items
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


def configured_languages(spec: XtremeRunSpec) -> list[str]:
    from robustft.data.xtreme import XTREME_TASKS, local_languages

    chosen = spec.xtreme.eval_languages
    if chosen == "local":
        found = local_languages(spec.task, spec.xtreme.eval_split, spec.data_dir)
        if not found:
            raise RunError(
                f"{spec.task}: eval_languages is 'local' but {spec.data_dir}/xtreme has no "
                f"{spec.xtreme.eval_split} files for it"
            )
        return found
    languages = list(chosen or XTREME_TASKS[spec.task].languages)
    unknown = [lang for lang in languages if lang not in XTREME_TASKS[spec.task].languages]
    if unknown:
        raise RunError(
            f"{spec.task}: eval_languages {unknown} are not XTREME languages of the task "
            f"({', '.join(XTREME_TASKS[spec.task].languages)})"
        )
    return languages


def eval_languages(spec: XtremeRunSpec) -> tuple[list[str], list[str]]:
    """The languages to score, and those left out: when training and evaluation read the same split
    (the CPU variant trains on the English dev set) English would be scored on its own training data, so
    it is left out. Translations are a split of their own (translate-train), never an evaluation split."""
    languages = configured_languages(spec)
    if spec.xtreme.train_split != spec.xtreme.eval_split:
        return languages, []
    return [lang for lang in languages if lang != "en"], [lang for lang in languages if lang == "en"]


# ------------------------------------------------------------------------------------------ run


def new_run_record(spec: XtremeRunSpec) -> dict[str, Any]:
    """run.json's start: the spec and its hash, which names this configuration of the run."""
    train = provenance.settings_record(asdict(spec.train), LATER_TRAIN_SETTINGS)
    spec_record = {**asdict(spec), "train": train, "xtreme": asdict(spec.xtreme)}
    return {"spec": spec_record, "config_hash": provenance.config_hash(spec_record)}


def train_xtreme_run(spec: XtremeRunSpec, out_dir: str | Path) -> dict[str, Any]:
    """Train (or, for retrieval, load) and evaluate one run; resumable like the GLUE runs, and like
    them a finished run that runs again starts over."""
    started = time.time()
    method = spec.validate()
    out_dir = Path(out_dir)
    run_record = new_run_record(spec)
    resume, _ = prepare_run_dir(out_dir, RUN_FILES, run_record["config_hash"], keep_finished=False)
    try:
        return _run(spec, method, out_dir, run_record, resume, started)
    except BaseException as err:
        record_failure(out_dir, run_record, err, started)
        raise


def _run(spec, method, out_dir: Path, run_record, resume, started) -> dict[str, Any]:
    from transformers import set_seed

    from robustft.data.xtreme import XTREME_TASKS

    task = XTREME_TASKS[spec.task]
    run_record.update(
        method=method.describe(),
        git_commit=provenance.git_commit(),
        versions=provenance.package_versions(),
        hardware=provenance.hardware(),
        slurm_job_id=provenance.slurm_job_id(),
    )
    write_json_atomic(out_dir / "run.json", {**run_record, "status": "running"})
    set_seed(spec.seed)
    if task.kind == "retrieval":
        from robustft.evals.xtreme_retrieval import evaluate_retrieval

        outcome = evaluate_retrieval(spec, task, configured_languages(spec))
        # The data sources and the XNLI run behind the encoder, with the rest of the provenance.
        run_record.update(data=outcome.pop("data"), encoder_run=outcome["encoder_run"])
    else:
        outcome = _train_and_evaluate(spec, method, task, out_dir, run_record, resume)
    result = {
        "status": outcome.pop("status", "ok"),
        "model": spec.model,
        "task": spec.task,
        "setting": spec.setting,
        "method": spec.method,
        "seed": spec.seed,
        "kind": task.kind,
        "primary_metric": task.primary_metric,
        "metrics_names": list(task.metrics),
        "eval_split": spec.xtreme.eval_split,
        **outcome,
    }
    return finish_run(
        out_dir, run_record, result, keep_checkpoints=spec.train.keep_checkpoints, started=started
    )


def _load_model(spec: XtremeRunSpec, task) -> tuple[Any, list[str]]:
    """The pretrained encoder with the task's new head, and the names of the head's parameters."""
    from transformers import (
        AutoConfig,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    from robustft.models import _common_kwargs, _hub_files, get_model_spec

    auto = {
        "classification": AutoModelForSequenceClassification,
        "tagging": AutoModelForTokenClassification,
        "qa": AutoModelForQuestionAnswering,
    }[task.kind]
    model_spec = get_model_spec(spec.model, spec.cache_dir)
    kwargs = _common_kwargs(spec.cache_dir, False)
    extra = {"num_labels": len(task.labels)} if task.kind != "qa" else {}
    with _hub_files(model_spec, spec.cache_dir):
        config = AutoConfig.from_pretrained(model_spec.location(), **extra, **kwargs)
        model, info = auto.from_pretrained(
            model_spec.location(), config=config, use_safetensors=True, output_loading_info=True, **kwargs
        )
    names = {n for n, _ in model.named_parameters()}
    return model, sorted(set(info.get("missing_keys", [])) & names)


def _train_and_evaluate(spec, method, task, out_dir: Path, run_record, resume) -> dict[str, Any]:
    """Train on the setting's data and score every evaluation language, in the order that fixes the
    random numbers: data, model and method, run.json, the trainer, training, the encoder, evaluation."""
    from robustft.data.xtreme import load_xtreme_train
    from robustft.train.callbacks import divergence
    from robustft.train.precision import resolve_precision, training_device

    config, settings = spec.train, spec.xtreme
    precision = resolve_precision(config.precision, method.components, training_device())
    train_data, train_languages = load_xtreme_train(
        spec.task,
        spec.setting,
        spec.data_dir,
        spec.cache_dir,
        split=settings.train_split,
        english_only_ok=settings.english_only_translate_train,
    )
    tokenizer, model, context = _load_model_with_method(spec, task, method)
    window = _qa_window(spec)
    kind = _KINDS[task.kind]
    train_dataset, n_train, train_source = kind.encode_train(train_data, task, tokenizer, config, window)
    run_record.update(
        data={"train": train_source}, train_languages=train_languages, precision=precision.record()
    )
    write_json_atomic(out_dir / "run.json", {**run_record, "status": "running"})

    trainer, checkpoints, nonfinite = _build_trainer(
        spec,
        task,
        method,
        context,
        model,
        tokenizer,
        train_dataset,
        precision=precision,
        out_dir=out_dir,
        checkpoint_tag=run_record["config_hash"],
    )
    train_output = _train_or_raise(trainer, checkpoints, resume, out_dir)
    if settings.save_encoder:
        trainer.save_model(str(out_dir / ENCODER_DIR))
        tokenizer.save_pretrained(str(out_dir / ENCODER_DIR))

    languages, excluded = eval_languages(spec)
    per_language, sources = _evaluate_languages(spec, task, trainer, tokenizer, window, languages)
    loss = train_output.training_loss
    # XTREME evaluates once, after training: the training losses alone decide a blow-up.
    diverged_at, diverged_because = divergence(
        nonfinite.diverged_at, bool(np.isfinite(loss)), trainer.state.log_history, config.divergence_factor
    )
    run_record["data"].update(sources)
    run_record.update(method_log=context.log, train_metrics=train_output.metrics)
    return {
        "status": "diverged" if diverged_because else "ok",
        "languages": per_language,
        "excluded_languages": excluded,
        "train_languages": train_languages,
        "n_train": n_train,
        "train_loss": loss,
        "diverged_at_step": diverged_at,
        "diverged_because": diverged_because,
        "layer": None,
    }


def _load_model_with_method(spec: XtremeRunSpec, task, method) -> tuple[Any, Any, Any]:
    """(tokenizer, model, context): the pretrained encoder with the task's new head, prepared by the
    method (NoisyTune perturbs, Mixout wraps)."""
    from robustft.methods import RunContext
    from robustft.models import load_tokenizer

    tokenizer = load_tokenizer(spec.model, cache_dir=spec.cache_dir)
    model, new_parameters = _load_model(spec, task)
    context = RunContext(seed=spec.seed, new_parameter_names=frozenset(new_parameters), regression=False)
    method.prepare_model(model, context)
    return tokenizer, model, context


def _qa_window(spec: XtremeRunSpec):
    """How QA contexts are cut into windows and answers decoded (the other kinds ignore it)."""
    from robustft.train.xtreme_heads import QAWindowSettings

    settings = spec.xtreme
    return QAWindowSettings(
        max_seq_length=spec.train.max_seq_length,
        doc_stride=settings.doc_stride,
        max_query_length=settings.max_query_length,
        max_answer_length=settings.max_answer_length,
        n_best=settings.n_best,
    )


def _build_trainer(
    spec: XtremeRunSpec,
    task,
    method,
    context,
    model,
    tokenizer,
    train_dataset,
    *,
    precision,
    out_dir: Path,
    checkpoint_tag: str,
) -> tuple[Any, Any, Any]:
    """(trainer, checkpoint callback, divergence callback): a RobustTrainer that trains without
    evaluating and writes history.jsonl."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    from robustft.train.arguments import point_trackers_at, training_arguments
    from robustft.train.callbacks import DivergenceCallback, HistoryCallback
    from robustft.train.checkpoints import CheckpointCallback
    from robustft.train.trainer import RobustTrainer

    collator = (
        DataCollatorForTokenClassification(tokenizer)
        if task.kind == "tagging"
        else DataCollatorWithPadding(tokenizer)
    )
    args = training_arguments(
        spec.train,
        out_dir,
        seed=spec.seed,
        # Evaluation is per language, after training (XTREME has no model selection on target languages
        # in the zero-shot setting).
        eval_strategy="no",
        precision=precision.used,
        use_cpu=precision.use_cpu,  # transformers refuses bf16/fp16 without a GPU unless told
    )
    nonfinite, checkpoints = DivergenceCallback(), CheckpointCallback()
    trainer = RobustTrainer(
        method=method,
        context=context,
        checkpoint_tag=checkpoint_tag,
        model=model,
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=[checkpoints, HistoryCallback(out_dir / "history.jsonl"), nonfinite],
    )
    point_trackers_at(trainer, out_dir)
    return trainer, checkpoints, nonfinite


def _train_or_raise(trainer, checkpoints, resume: Path | None, out_dir: Path):
    """Train (from `resume` when given) and return Trainer's output; a stop on SIGTERM (checkpoint
    saved) raises RunPreempted."""
    from robustft.train.checkpoints import stop_on_sigterm

    with stop_on_sigterm(checkpoints):
        train_output = trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    if checkpoints.stopped_at is not None:
        raise RunPreempted(
            f"run {out_dir} stopped on SIGTERM with a checkpoint at step {checkpoints.stopped_at}; "
            "run the same command again to resume"
        )
    return train_output


def _evaluate_languages(
    spec: XtremeRunSpec, task, trainer, tokenizer, window, languages: list[str]
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """({language: scores}, {language: data source}): the trained model on each language's eval split."""
    from tqdm.auto import tqdm

    from robustft.data.xtreme import load_xtreme_split

    config, settings = spec.train, spec.xtreme
    kind = _KINDS[task.kind]
    per_language: dict[str, dict[str, float]] = {}
    sources: dict[str, str] = {}
    for language in tqdm(languages, desc=f"{spec.task} {settings.eval_split}", unit="language"):
        split = load_xtreme_split(spec.task, settings.eval_split, language, spec.data_dir, spec.cache_dir)
        scores, sources[language] = kind.evaluate(trainer, split, task, tokenizer, config, window, language)
        per_language[language] = scores
        logger.info("%s %s: %s", spec.task, language, scores)
    return per_language, sources


# ------------------------------------------------------------------------------------------ task kinds


class _Classification:
    @staticmethod
    def encode_train(data, task, tokenizer, config, window):
        from robustft.data.base import SplitData
        from robustft.train.xtreme_heads import encode_pairs

        rows = _subsample(list(range(len(data))), config.max_train_samples, config.data_seed)
        data = SplitData(
            texts=[[column[i] for i in rows] for column in data.texts],
            labels=[data.labels[i] for i in rows],
            source=data.source if len(rows) == len(data) else f"{data.source} (random {len(rows)})",
        )
        return encode_pairs(data.texts, data.labels, tokenizer, config.max_seq_length), len(data), data.source

    @staticmethod
    def evaluate(trainer, split, task, tokenizer, config, window, language):
        from robustft.train.xtreme_heads import encode_pairs

        rows = _subsample(list(range(len(split))), config.max_eval_samples, config.data_seed)
        texts = [[column[i] for i in rows] for column in split.texts]
        labels = np.asarray([split.labels[i] for i in rows])
        features = encode_pairs(texts, None, tokenizer, config.max_seq_length)
        # Similar lengths in a batch mean little padding (evaluation is most of a CPU run's time); the
        # labels follow the same order, so accuracy is unchanged.
        order = np.argsort([len(ids) for ids in features["input_ids"]], kind="stable")
        output = trainer.predict(features.select(order.tolist()))
        predictions = np.asarray(output.predictions).argmax(axis=-1)
        return {"accuracy": float((predictions == labels[order]).mean()), "n": len(rows)}, split.source


class _Tagging:
    @staticmethod
    def encode_train(data, task, tokenizer, config, window):
        from robustft.train.xtreme_heads import encode_tagging

        rows = _subsample(list(range(len(data.tokens))), config.max_train_samples, config.data_seed)
        features = encode_tagging(
            [data.tokens[i] for i in rows],
            [data.tags[i] for i in rows],
            task.labels,
            tokenizer,
            config.max_seq_length,
        )
        return features.dataset, len(rows), data.source

    @staticmethod
    def evaluate(trainer, split, task, tokenizer, config, window, language):
        from robustft.evals.xtreme_metrics import tagging_f1
        from robustft.train.xtreme_heads import decode_tagging, encode_tagging

        rows = _subsample(list(range(len(split.tokens))), config.max_eval_samples, config.data_seed)
        sentences, gold = [split.tokens[i] for i in rows], [split.tags[i] for i in rows]
        features = encode_tagging(sentences, None, task.labels, tokenizer, config.max_seq_length)
        output = trainer.predict(features.dataset)
        predicted = decode_tagging(np.asarray(output.predictions), features, sentences, task.labels)
        return {"f1": tagging_f1(gold, predicted), "n": len(rows)}, split.source


class _QA:
    @staticmethod
    def encode_train(data, task, tokenizer, config, window):
        from robustft.train.xtreme_heads import encode_qa

        examples = _subsample(data.examples, config.max_train_samples, config.data_seed)
        features = encode_qa(examples, tokenizer, window, train=True)
        return features.dataset, len(examples), data.source

    @staticmethod
    def evaluate(trainer, split, task, tokenizer, config, window, language):
        from robustft.evals.xtreme_metrics import squad_scores
        from robustft.train.xtreme_heads import decode_qa, encode_qa

        examples = _subsample(split.examples, config.max_eval_samples, config.data_seed)
        features = encode_qa(examples, tokenizer, window, train=False)
        start_logits, end_logits = trainer.predict(features.dataset).predictions[:2]
        answers = decode_qa(np.asarray(start_logits), np.asarray(end_logits), features, examples, window)
        scores = squad_scores(
            answers,
            {e.id: e.answers for e in examples},
            language=language,
            normalization=QA_NORMALIZATION.get(task.key, "squad"),
        )
        return {**scores, "n": len(examples)}, split.source


_KINDS = {"classification": _Classification, "tagging": _Tagging, "qa": _QA}


# ------------------------------------------------------------------------------------------ CLI


def _spec_from_args(args: argparse.Namespace) -> XtremeRunSpec:
    train = dict(args.train_config or {})
    unknown = sorted(set(train) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise RunError(f"--train-config has unknown key(s) {unknown}")
    settings = dict(args.xtreme_config or {})
    unknown = sorted(set(settings) - set(XtremeSettings.__dataclass_fields__))
    if unknown:
        raise RunError(f"--xtreme-config has unknown key(s) {unknown}")
    return XtremeRunSpec(
        model=args.model,
        task=args.task,
        setting=args.setting,
        method=args.method,
        seed=args.seed,
        train=TrainConfig(**train),
        xtreme=XtremeSettings(**settings),
        components=args.method_components,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        encoder_dir=getattr(args, "encoder_dir", None),
    )


def cmd_train_xtreme(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    spec.validate()  # names and settings fail before torch is imported
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = train_xtreme_run(spec, args.out)
    summary = {lang: scores for lang, scores in result.get("languages", {}).items()}
    print(json.dumps({"status": result["status"], "languages": summary}, indent=2))
    return 0 if result["status"] in ("ok", "diverged") else 1
