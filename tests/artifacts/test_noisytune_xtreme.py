"""NoisyTune Table 3 (noisytune/table3) from a hand-made xtreme table: claims, paper values, not-run cells,
the mechanics-check mode and the per-language appendix."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from robustft.artifacts import ARTIFACTS, ArtifactContext, read_appendix, read_result, write_result
from robustft.artifacts.base import CLAIM_COLUMNS
from robustft.artifacts.noisytune_xtreme import MECHANICS_CHECK, MECHANICS_NOTE
from robustft.tables.xtreme import XTREME_COLUMNS

CONTEXT = ArtifactContext(paper_model={"xlmr-tiny": "xlm-r-base"}, n_boot=2000)
SEEDS = (1, 2, 3)
# Per (task, metric): the baseline's score per language (fractions); NoisyTune adds GAIN[seed].
BASE = {
    ("xnli", "accuracy"): {"en": 0.80, "de": 0.70},
    ("xquad", "f1"): {"en": 0.75, "de": 0.65},
    ("xquad", "em"): {"en": 0.60, "de": 0.50},
}
GAIN = {1: 0.020, 2: 0.021, 3: 0.019}  # 2 points on every language, give or take 0.1


def xtreme_table(
    methods: tuple[str, ...] = ("finetune", "noisytune"), failed: tuple[str, str, int] | None = None
) -> pd.DataFrame:
    """xtreme.csv for model xlmr-tiny, zero-shot; `failed` = (task, method, seed) of a failed run."""
    rows = []
    for method in methods:
        for seed in SEEDS:
            for (task, metric), languages in BASE.items():
                run_dir = f"results/xtreme/xlmr-tiny/{task}/zero-shot/{method}/seed{seed}"
                common = {"model": "xlmr-tiny", "task": task, "setting": "zero-shot", "method": method}
                common |= {"seed": seed, "eval_split": "test", "run_dir": run_dir}
                if failed == (task, method, seed):
                    if metric == "em":
                        continue
                    rows.append({**common, "status": "failed"})
                    continue
                for language, base in languages.items():
                    value = base + (GAIN[seed] if method != "finetune" else 0.0) + 0.01 * seed
                    rows.append(
                        {
                            **common,
                            "status": "ok",
                            "language": language,
                            "metric": metric,
                            "value": value,
                            "n": 50,
                        }
                    )
    return pd.DataFrame(rows, columns=XTREME_COLUMNS)


def build(frame: pd.DataFrame, **extra: object):
    context = ArtifactContext(paper_model=CONTEXT.paper_model, n_boot=CONTEXT.n_boot, extra=dict(extra))
    return ARTIFACTS["noisytune/table3"].build(frame, context)


def test_claims_pair_seeds_and_sit_beside_the_papers_values() -> None:
    result = build(xtreme_table())
    assert result.status == "regenerated"
    claims = result.claims.set_index("task")
    assert list(result.claims.columns)[: len(CLAIM_COLUMNS)] == CLAIM_COLUMNS
    xnli = claims.loc["zero-shot: XNLI"]
    assert xnli["n_pairs"] == 3 and xnli["delta"] == pytest.approx(2.0)
    assert xnli["mean_baseline"] == pytest.approx(100 * (0.75 + 0.02))  # mean over en/de, then seeds
    assert xnli["ci_low"] > 0 and xnli["p_kind"] == "Holm" and xnli["p_value"] < 0.05
    # Paper, xlm-r-base zero-shot: XNLI 74.8 -> 75.2; XQuAD EM 56.6 -> 57.1.
    assert xnli["paper_baseline"] == pytest.approx(74.8) and xnli["paper_value"] == pytest.approx(75.2)
    assert xnli["paper_delta"] == pytest.approx(0.4)
    # We scored en and de, the paper's XNLI number is its mean over 15 languages: no verdict against it.
    assert xnli["verdict"] == "not comparable"
    assert any("XNLI: not comparable, scored 2 of 15 languages" in note for note in result.notes)
    assert claims.loc["zero-shot: XQuAD em", "paper_delta"] == pytest.approx(0.5)
    assert claims.loc["zero-shot: XQuAD f1", "metric"] == "f1"
    # The average over the two tasks we ran: ours Δ 2; the paper's recomputed over XNLI and XQuAD by the
    # category rule: (75.2 + (72.3 + 57.1)/2)/2 - (74.8 + (71.9 + 56.6)/2)/2 = 69.95 - 69.525.
    average = claims.loc["zero-shot: XTREME-avg"]
    assert average["delta"] == pytest.approx(2.0) and average["p_kind"] == "t-test"
    assert average["paper_delta"] == pytest.approx(69.95 - 69.525)
    assert any("averaged over XNLI, XQuAD" in note for note in result.notes)
    assert average["verdict"] == "not comparable"
    assert any(
        "not comparable, 2 of its tasks scored on a subset of their languages" in n for n in result.notes
    )
    assert result.figure is not None


def test_a_task_scored_on_all_its_languages_gets_a_verdict_and_a_subset_does_not(monkeypatch) -> None:
    from robustft.data.xtreme import XTREME_TASKS
    from robustft.stats import verdict

    every = dict.fromkeys(XTREME_TASKS["xnli"].languages, 0.70)
    monkeypatch.setitem(BASE, ("xnli", "accuracy"), every)
    result = build(xtreme_table())
    claims = result.claims.set_index("task")
    xnli = claims.loc["zero-shot: XNLI"]
    assert xnli["n_pairs"] == 3 and xnli["verdict"] == verdict(
        xnli["paper_delta"], xnli["ci_low"], xnli["ci_high"], xnli["n_pairs"], xnli["p_value"]
    )
    assert xnli["verdict"] != "not comparable"
    # XQuAD is still scored on 2 of its 11 languages, and the average inherits that.
    assert claims.loc["zero-shot: XQuAD f1", "verdict"] == "not comparable"
    assert claims.loc["zero-shot: XTREME-avg", "verdict"] == "not comparable"
    assert any(
        note.startswith(
            "xlmr-tiny zero-shot: XQuAD f1: not comparable, scored 2 of 11 languages (missing ar,"
        )
        for note in result.notes
    )
    assert any("not comparable, 1 of its tasks scored on a subset" in note for note in result.notes)


def test_tasks_without_runs_are_not_run_with_the_reason() -> None:
    result = build(xtreme_table())
    claims = result.claims.set_index("task")
    assert len(claims) == 12 + 1  # nine tasks, QA twice, and the average
    udpos = claims.loc["zero-shot: UDPOS"]
    assert udpos["verdict"] == "not run" and udpos["n_pairs"] == 0 and pd.isna(udpos["delta"])
    assert udpos["paper_delta"] == pytest.approx(0.5)  # the paper's number is still shown
    assert "xlmr-tiny zero-shot: UDPOS: not run (no `finetune` runs; no `noisytune` runs)." in result.notes


def test_a_failed_seed_drops_out_of_the_pairs() -> None:
    result = build(xtreme_table(failed=("xnli", "noisytune", 2)))
    xnli = result.claims.set_index("task").loc["zero-shot: XNLI"]
    assert xnli["n_pairs"] == 2 and xnli["n_failed"] == 1
    average = result.claims.set_index("task").loc["zero-shot: XTREME-avg"]
    assert average["n_pairs"] == 2  # seed 2 of noisytune has no XNLI score, so no average


def test_without_noisytune_runs_the_table_is_not_run() -> None:
    result = build(xtreme_table(methods=("finetune",)))
    assert result.status == "not run" and "`noisytune`" in result.reason
    assert result.claims is None


def test_context_names_the_methods() -> None:
    frame = xtreme_table(methods=("ft", "nt"))
    assert build(frame).status == "not run"
    claims = build(frame, baseline="ft", method="nt").claims
    assert set(claims["method"]) == {"nt"} and set(claims["baseline"]) == {"ft"}
    assert claims.set_index("task").loc["zero-shot: XNLI", "paper_delta"] == pytest.approx(0.4)


def test_mechanics_check_compares_nothing() -> None:
    result = build(xtreme_table(), mechanics_check=True)
    verdicts = result.claims.set_index("task")["verdict"]
    assert verdicts["zero-shot: XNLI"] == MECHANICS_CHECK
    assert verdicts["zero-shot: UDPOS"] == "not run"
    assert set(verdicts) == {MECHANICS_CHECK, "not run"}
    assert result.notes[0] == MECHANICS_NOTE and "not reproductions" in MECHANICS_NOTE
    assert result.caption.startswith("Mechanics check, not a reproduction.")


def test_per_language_appendix_has_mean_std_and_seeds_per_method(tmp_path: Path) -> None:
    result = build(xtreme_table(failed=("xnli", "noisytune", 2)))
    appendix = result.appendix.set_index(["task", "metric", "language"])
    assert len(appendix) == 6 and result.appendix_title
    de = appendix.loc[("XNLI", "accuracy", "de")]
    # finetune: 70 + 1, 2, 3 points; noisytune (seed 2 failed): 70 + 1 + 2.0 and 70 + 3 + 1.9.
    assert de["finetune mean"] == pytest.approx(72.0) and de["finetune std"] == pytest.approx(1.0)
    assert de["finetune n"] == 3 and de["noisytune n"] == 2
    assert de["noisytune mean"] == pytest.approx((73.0 + 74.9) / 2)
    assert de["Δ of means"] == pytest.approx((73.0 + 74.9) / 2 - 72.0)

    record = write_result(result, tmp_path / "table3")
    loaded, claims = read_result(tmp_path / "table3")
    assert loaded == json.loads(json.dumps(record)) and len(claims) == len(result.claims)
    assert record["appendix"] == "appendix.csv"
    pd.testing.assert_frame_equal(read_appendix(tmp_path / "table3", loaded), result.appendix)
    # A result without an appendix removes the stale file and names none.
    result.appendix = None
    assert "appendix" not in write_result(result, tmp_path / "table3")
    assert not (tmp_path / "table3" / "appendix.csv").exists()
    assert (
        read_appendix(tmp_path / "table3", json.loads((tmp_path / "table3" / "result.json").read_text()))
        is None
    )


def test_translate_train_all_training_languages_and_config_choices_reach_the_report() -> None:
    frame = xtreme_table()
    frame["setting"] = "translate-train-all"
    frame["train_languages"] = frame["task"].map(lambda task: "en" if task == "xquad" else "en+de+zh")
    result = build(frame, choices=["a choice from xtreme.report.choices"])
    assert "a choice from xtreme.report.choices" in result.choices
    notes = " ".join(result.notes)
    assert "translate-train-all XQuAD: trained on English only" in notes
    assert "translate-train-all XNLI: trained on en, de, zh" in notes
