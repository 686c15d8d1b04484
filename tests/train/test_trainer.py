"""RobustTrainer (src/robustft/train/trainer.py): accumulated micro-batches take the step of one batch, for
equal and unequal micro-batches, over an epoch whose last step has fewer of them, and for token
classification, where the task loss is a mean over labelled tokens and the components' terms over rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from robustft.methods import RunContext, build_method
from robustft.methods.base import Batch, Component, Method
from robustft.methods.mixout import Mixout
from robustft.models import load_sequence_classifier_with_info, load_tokenizer
from robustft.train.trainer import RobustTrainer

TEXTS = [
    "a good film",
    "bad",
    "the plot was thin and slow",
    "great acting",
    "dull",
    "fine",
    "ok",
    "no",
    "an unexpected delight from start to end",
    "boring and far too long",
    "I laughed a lot",
    "the music was wonderful",
    "nothing happens",
    "a mess",
    "well made",
    "weak script, strong cast",
]
EXAMPLES = 32


@dataclass
class LogitPenalty(Component):
    """A deterministic loss term, a mean over the batch like R3F's and SMART's: weight · mean(logits²)."""

    name = "logit_penalty"
    weight: float = 0.5

    def extra_loss(self, batch: Batch, context: RunContext) -> torch.Tensor:
        return self.weight * batch.logits.float().pow(2).mean()


def _token_labels(encoded: dict[str, list[list[int]]], row: int) -> list[int]:
    """Per-token labels of a row, -100 at [CLS], at padding and at every third real token, so rows have
    different numbers of labelled tokens (the later, longer rows more)."""
    real = sum(encoded["attention_mask"][row])
    return [
        -100 if position == 0 or position >= real or position % 3 == 2 else token % 3
        for position, token in enumerate(encoded["input_ids"][row])
    ]


def _one_step(
    tiny_model: str,
    method: Method,
    batch_size: int,
    accumulation: int,
    out: Path,
    examples: int = EXAMPLES,
    max_steps: int = 1,
    token_classification: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(parameters before, parameters after) `max_steps` SGD steps on `examples` examples, dropout off,
    fp32; a sequence classifier, or a token classifier with -100 labels."""
    import datasets
    from transformers import (
        AutoModelForTokenClassification,
        DataCollatorWithPadding,
        TrainingArguments,
        set_seed,
    )

    from robustft.models import get_model_spec

    tokenizer = load_tokenizer(tiny_model)
    texts = [TEXTS[i % len(TEXTS)] + " !" * (i // len(TEXTS)) for i in range(examples)]
    # One padded length for all, so the micro-batches see exactly the tensors the full batch sees.
    encoded = tokenizer(texts, padding="max_length", max_length=16, truncation=True)
    if token_classification:
        labels = [_token_labels(encoded, row) for row in range(examples)]
    else:
        labels = [i % 2 for i in range(examples)]
    dataset = datasets.Dataset.from_dict({**encoded, "labels": labels})
    set_seed(0)
    if token_classification:
        model, info = AutoModelForTokenClassification.from_pretrained(
            get_model_spec(tiny_model).location(), num_labels=3, output_loading_info=True
        )
        new = info["missing_keys"]
    else:
        model, new = load_sequence_classifier_with_info(tiny_model, num_labels=2)
    assert Mixout._disable_dropout(model)  # deterministic forwards: the two runs must see the same model
    context = RunContext(seed=0, new_parameter_names=frozenset(new))
    method.prepare_model(model, context)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        # Plain SGD without clipping: the step is lr × gradient, so a wrong gradient scale shows (AdamW's
        # first step is lr × sign(gradient) and would hide it).
        optim="sgd",
        learning_rate=0.5,
        weight_decay=0.0,
        max_grad_norm=0.0,
        lr_scheduler_type="constant",
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        seed=0,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = RobustTrainer(
        method=method,
        context=context,
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    assert trainer.model_accepts_loss_kwargs  # so Trainer counts num_items_in_batch: the case at issue
    trainer.train()
    return before, {name: p.detach().clone() for name, p in model.named_parameters()}


METHODS = {
    "finetune": lambda: build_method("finetune"),
    # A real loss-term component, with noise large enough that its term moves the step (by ~7e-4 here):
    # the noise of the 32 rows is drawn as one block or as two blocks of 16 in a row, the same numbers.
    "r3f": lambda: build_method("r3f", {"r3f": {"noise_eps": 0.5}}),
    "loss_term": lambda: Method(name="logit_penalty", components=[LogitPenalty()]),
    # The owned training step; with δ_0 = 0 the ascent direction is per-example normalised, so it is the
    # same in both runs and the two passes are deterministic.
    "freelb": lambda: build_method("freelb", {"freelb": {"adv_steps": 2, "adv_init_mag": 0.0}}),
}


def _assert_same_step(
    before: dict[str, torch.Tensor], whole: dict[str, torch.Tensor], accumulated: dict[str, torch.Tensor]
) -> None:
    largest_step = max(float((whole[name] - before[name]).abs().max()) for name in before)
    assert largest_step > 1e-3  # the comparison below is not between two models that did not move
    for name, value in whole.items():
        torch.testing.assert_close(
            accumulated[name], value, rtol=0, atol=1e-6, msg=lambda message, name=name: f"{name}: {message}"
        )


@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_accumulating_two_batches_of_16_is_one_batch_of_32(
    tiny_model: str, tmp_path: Path, method_name: str
) -> None:
    before, whole = _one_step(tiny_model, METHODS[method_name](), 32, 1, tmp_path / "whole")
    _, accumulated = _one_step(tiny_model, METHODS[method_name](), 16, 2, tmp_path / "accumulated")
    _assert_same_step(before, whole, accumulated)


@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_unequal_micro_batches_of_16_and_8_are_one_batch_of_24(
    tiny_model: str, tmp_path: Path, method_name: str
) -> None:
    """Each micro-batch weighs as its rows do (16/24 and 8/24), not as 1/2: dividing by the accumulation
    steps would give the 8 rows of the second micro-batch twice their weight."""
    method = METHODS[method_name]
    before, whole = _one_step(tiny_model, method(), 24, 1, tmp_path / "whole", examples=24)
    _, accumulated = _one_step(tiny_model, method(), 16, 2, tmp_path / "accumulated", examples=24)
    _assert_same_step(before, whole, accumulated)


def test_freelb_last_step_of_an_epoch_with_one_micro_batch(tiny_model: str, tmp_path: Path) -> None:
    """48 examples at 16 × 2: the epoch's second and last optimizer step has one micro-batch (16 rows), which
    must not be halved as if it had two; against 32 then 16 without accumulation (the same shuffled order)."""
    method = METHODS["freelb"]
    before, whole = _one_step(tiny_model, method(), 32, 1, tmp_path / "whole", examples=48, max_steps=2)
    _, accumulated = _one_step(
        tiny_model, method(), 16, 2, tmp_path / "accumulated", examples=48, max_steps=2
    )
    _assert_same_step(before, whole, accumulated)


@pytest.mark.parametrize("method_name", ["finetune", "loss_term"])
def test_token_classification_weighs_the_loss_by_tokens_and_the_terms_by_rows(
    tiny_model: str, tmp_path: Path, method_name: str
) -> None:
    """The second micro-batch's rows are longer and have more labelled tokens than the first's: the task
    loss (a mean over labelled tokens) weighs by tokens, the per-row loss term by rows."""
    method = METHODS[method_name]
    before, whole = _one_step(tiny_model, method(), 32, 1, tmp_path / "whole", token_classification=True)
    _, accumulated = _one_step(
        tiny_model, method(), 16, 2, tmp_path / "accumulated", token_classification=True
    )
    _assert_same_step(before, whole, accumulated)


def test_evaluation_reads_the_eval_set_in_its_own_order_when_training_groups_by_length(
    tiny_model: str, tmp_path: Path
) -> None:
    """Trainer batches evaluation and prediction through its random LengthGroupedSampler when training
    groups by length; our eval sets are sorted by length, and that order must reach the batches (no padding
    to a random batch's longest example, predictions in the rows' order), in one process."""
    import datasets
    from transformers import DataCollatorWithPadding, TrainingArguments

    tokenizer = load_tokenizer(tiny_model)
    # Lengths sorted ascending, as train.glue's eval sets are: 1, 2, ..., 40 words.
    texts = [" ".join(["word"] * n) for n in range(1, 41)]
    dataset = datasets.Dataset.from_dict({**tokenizer(texts), "labels": [n % 2 for n in range(40)]})
    model, new = load_sequence_classifier_with_info(tiny_model, num_labels=2)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=8,
        train_sampling_strategy="group_by_length",
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = RobustTrainer(
        method=build_method("finetune"),
        context=RunContext(seed=0, new_parameter_names=frozenset(new)),
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    lengths = [len(ids) for ids in dataset["input_ids"]]
    in_order = [max(lengths[i : i + 8]) for i in range(0, 40, 8)]
    assert [batch["input_ids"].shape[1] for batch in trainer.get_eval_dataloader()] == in_order
    # `predict` too: train.glue pairs its rows with the split's labels by position.
    assert [batch["input_ids"].shape[1] for batch in trainer.get_test_dataloader(dataset)] == in_order
