"""FreeLB through the SFT path (robustft.train.sft, methods/freelb.py) on the tiny random Llama of
test_sft.py: K ascent steps on the input-embedding perturbation, the loss over response tokens only, δ zero
on padding and present on prompt and response tokens, each sequence's δ scaled over its own tokens, and
the step weighted by its share of the optimizer step's response tokens."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from robustft.methods import RunContext, build_method
from robustft.train.config import RunError
from robustft.train.sft import sft_run
from robustft.train.trainer import StepFunctions
from tests.train import test_sft
from tests.train.test_sft import _spec

# test_sft's fixtures, shared: the real Alpaca seed tasks and the tiny Llama built over their words
data_dir = test_sft.data_dir
tiny_llama = test_sft.tiny_llama

# (real tokens, prompt tokens) of each row; the shorter rows are padded
ROWS = ((12, 5), (8, 3), (6, 4))
# One optimizer step over two micro-batches; plain SGD with no warm-up, so the update is the gradient itself
# (Adam's first step is about lr * sign(g), and warm-up would make the first learning rate 0).
ONE_STEP = dict(
    max_steps=1,
    batch_size=2,
    gradient_accumulation_steps=2,
    optimizer="sgd",
    learning_rate=0.1,
    warmup_ratio=0.0,
    save_model=False,
)
FREELB = {"adv_steps": 3, "adv_lr": 0.5, "adv_init_mag": 2.0, "adv_max_norm": 0.0, "norm": "l2"}


def _batch(vocab_size: int, pad_id: int) -> dict[str, torch.Tensor]:
    """A batch as TRL's completion-only collation makes it: right padding, -100 on prompt and padding."""
    generator = torch.Generator().manual_seed(0)
    width = max(length for length, _ in ROWS)
    ids = torch.randint(3, vocab_size, (len(ROWS), width), generator=generator)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for row, (length, prompt) in enumerate(ROWS):
        mask[row, :length] = 1
        labels[row, prompt:length] = ids[row, prompt:length]
    return {"input_ids": ids.masked_fill(mask == 0, pad_id), "attention_mask": mask, "labels": labels}


class _Recording(StepFunctions):
    """StepFunctions that keep the embeddings and the loss of every pass."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[torch.Tensor] = []
        self.losses: list[torch.Tensor] = []

    def loss_with_embeddings(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append(embeddings.detach().clone())
        loss, logits = super().loss_with_embeddings(embeddings)
        self.losses.append(loss.detach())
        return loss, logits


def _response_loss(model, inputs: dict[str, torch.Tensor], embeddings: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled (response) tokens, computed by hand."""
    with torch.no_grad():
        logits = model(inputs_embeds=embeddings, attention_mask=inputs["attention_mask"]).logits
    target = inputs["labels"][:, 1:]
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), target, ignore_index=-100, reduction="none")
    return nll.sum() / (target != -100).sum()


def test_freelb_sft_step_perturbs_real_tokens_and_trains_on_the_response(tiny_llama: str) -> None:
    from robustft.models import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_llama)
    model.eval()  # no dropout: the passes differ by δ only
    inputs = _batch(model.config.vocab_size, tokenizer.pad_token_id)
    with torch.no_grad():
        plain = model(**inputs).loss
    method = build_method("freelb", {"freelb": FREELB})
    context = RunContext(seed=0)
    method.prepare_model(model, context)
    torch.manual_seed(0)
    step = _Recording(model, inputs, lambda loss: loss.backward(), 1, 1.0)
    loss = method.step_owner().training_step(step, context)

    assert len(step.seen) == FREELB["adv_steps"]
    assert not math.isclose(float(loss), float(plain), rel_tol=1e-4)  # the adversarial loss is another
    assert float(loss) == pytest.approx(float(torch.stack(step.losses).mean()))  # mean over the K passes
    with torch.no_grad():
        clean = model.get_input_embeddings()(inputs["input_ids"])
    real = inputs["attention_mask"].bool()
    prompt = torch.zeros_like(real)
    for row, (_, prompt_length) in enumerate(ROWS):
        prompt[row, :prompt_length] = True
    response = real & ~prompt
    dim = clean.size(-1)
    lengths = torch.tensor([length for length, _ in ROWS], dtype=torch.float32)
    deltas = [seen - clean for seen in step.seen]
    for delta, seen, pass_loss in zip(deltas, step.seen, step.losses, strict=True):
        assert torch.count_nonzero(delta[~real]) == 0  # padding unperturbed
        for row in range(len(ROWS)):  # every real token perturbed, prompt and response alike
            assert (delta[row][prompt[row]].abs().amax(dim=-1) > 0).all()
            assert (delta[row][response[row]].abs().amax(dim=-1) > 0).all()
        # the model's loss with the batch's labels is the response tokens' mean
        assert float(pass_loss) == pytest.approx(float(_response_loss(model, inputs, seen)), rel=1e-5)
    # δ_0 is scaled by each sequence's own length; every ascent step moves a sequence's δ by adv_lr in l2
    bound = FREELB["adv_init_mag"] / torch.sqrt(lengths * dim)
    assert (deltas[0].abs().amax(dim=(1, 2)) <= bound + 1e-7).all()
    for before, after in itertools.pairwise(deltas):
        moved = (after - before).flatten(1).norm(dim=1)
        assert torch.allclose(moved, torch.full_like(moved, FREELB["adv_lr"]), rtol=1e-4)
    # the parameters got the gradients of all K passes
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def plain_run(tiny_llama: str, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One optimizer step of plain SFT over two micro-batches of unequal response tokens."""
    spec = _spec(data_dir, **ONE_STEP)
    return sft_run(spec, tmp_path_factory.mktemp("plain") / "sft")


def test_freelb_with_one_pass_and_no_delta_is_plain_sft_accumulated(
    plain_run: dict,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """K = 1 and adv_init_mag 0 is plain SFT, also under accumulation: each micro-batch weighs as its share
    of the step's response tokens (TRL's sum / num_items_in_batch), not of its rows."""
    from robustft.train import sft

    shares: list[float | None] = []
    trainer_class = sft._trainer_class()
    original = trainer_class._owner_step_share

    def spy(self, inputs, num_items_in_batch):
        shares.append(original(self, inputs, num_items_in_batch))
        return shares[-1]

    monkeypatch.setattr(trainer_class, "_owner_step_share", spy)
    components = {"freelb": {"adv_steps": 1, "adv_init_mag": 0.0}}
    spec = _spec(
        data_dir,
        "freelb",
        components,
        **ONE_STEP,
    )
    result = sft_run(spec, tmp_path / "sft")
    assert result["status"] == plain_run["status"] == "ok"
    assert len(shares) == 2 and sum(shares) == pytest.approx(1.0)
    assert shares[0] != pytest.approx(0.5)  # unequal response tokens: rows would weigh them alike
    assert result["train_loss"] == pytest.approx(plain_run["train_loss"], rel=1e-5)
    # the same update: the noise-free losses of the two final models agree
    assert result["final_train_loss"] == pytest.approx(plain_run["final_train_loss"], rel=1e-5)
    assert result["final_heldout_loss"] == pytest.approx(plain_run["final_heldout_loss"], rel=1e-5)
    assert result["tokens_per_second"] > 0  # TRL's token count, kept outside its compute_loss


def test_one_freelb_sft_step_runs_and_changes_the_update(
    plain_run: dict, data_dir: Path, tmp_path: Path
) -> None:
    spec = _spec(
        data_dir,
        "freelb",
        {"freelb": FREELB},
        **ONE_STEP,
    )
    result = sft_run(spec, tmp_path / "sft")
    assert result["status"] == "ok" and result["steps"] == 1
    assert math.isfinite(result["train_loss"])
    assert result["train_loss"] != pytest.approx(plain_run["train_loss"], rel=1e-4)
    assert result["final_train_loss"] != pytest.approx(plain_run["final_train_loss"], rel=1e-6)


def test_freelb_sft_refuses_packing_and_loss_term_components(tiny_llama: str, data_dir: Path) -> None:
    with pytest.raises(RunError, match=r"freelb.*packing"):
        _spec(data_dir, "freelb", {"freelb": {}}, packing=True).validate()
    spec = _spec(data_dir, "r3f", {"r3f": {}})
    with pytest.raises(RunError, match="r3f"):
        spec.validate()
    method = _spec(data_dir, "freelb", {"freelb": {}}).validate()  # accepted on the SFT path
    assert method.step_owner().name == "freelb"
