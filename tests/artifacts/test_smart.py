"""SMART's artifacts (robustft.artifacts.smart) on hand-made runs tables: best of seeds, paper lookups,
the per-block baselines, Table 3's MRPC F1, Tables 5/6 and Figure 2 on synthetic runs, and not-run reasons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustft.artifacts import ArtifactContext, get_artifact
from robustft.artifacts.smart import SMART_COLUMNS, TABLE1, TABLE6_BLOCK_B, agreement_table, paper_value
from robustft.reference import GLUE_AVG

CONTEXT = ArtifactContext(
    paper_model={"bert-base": "bert-base", "roberta-large": "roberta-large"}, n_boot=500
)


def run_row(
    model: str, task: str, method: str, seed: int, score: float, metric: str = "accuracy", **more
) -> dict:
    return {
        "model": model,
        "task": task,
        "method": method,
        "seed": seed,
        "status": "ok",
        "metric": metric,
        "score": score,
        f"m_{metric}": score,
        **{f"m_{k}": v for k, v in more.items()},
    }


def glue_runs(model: str = "bert-base") -> pd.DataFrame:
    """RTE and MRPC, 3 seeds: smart beats finetune by about 2 points, seed 3 is each method's best."""
    rows = []
    for task in ("rte", "mrpc"):
        for method, shift in (
            ("finetune", 0.0),
            ("smart", 2.0),
            ("smart_no_rs", 1.0),
            ("smart_no_breg", 1.5),
        ):
            for seed, noise in ((1, -0.3), (2, 0.1), (3, 0.4)):
                score = 70.0 + shift + noise
                more = {"f1": score + 10} if task == "mrpc" else {}
                rows.append(run_row(model, task, method, seed, score, **more))
    return pd.DataFrame(rows)


def test_table1_best_of_seeds_sits_beside_the_papers_best_of_three() -> None:
    result = get_artifact("smart/table1").build(glue_runs(), CONTEXT)
    assert result.status == "regenerated"
    claims = result.claims.set_index("task")
    assert list(result.claims.columns) == SMART_COLUMNS  # the base columns first, in their order
    rte = claims.loc["rte"]
    assert rte["best_method"] == pytest.approx(72.4) and rte["best_baseline"] == pytest.approx(70.4)
    assert rte["best_delta"] == pytest.approx(2.0)
    assert rte["mean_method"] == pytest.approx(72.0 + 0.2 / 3)
    assert rte["std_method"] == pytest.approx(np.std([-0.3, 0.1, 0.4], ddof=1))
    # BERT-base's baseline is BERT_ReImp (RTE 63.5), not Devlin et al.'s; SMART's RTE is 71.2.
    assert rte["paper_value"] == 71.2 and rte["paper_baseline"] == 63.5
    assert rte["paper_delta"] == pytest.approx(7.7)
    # Our primary MRPC metric is accuracy: the paper's MRPC accuracy column (87.7 vs 84.1), not F1.
    assert claims.loc["mrpc", "paper_metric"] == "MRPC accuracy"
    assert claims.loc["mrpc", "paper_value"] == 87.7 and claims.loc["mrpc", "paper_baseline"] == 84.1
    # The average has no best seed; its paper side is the mean of the paper's values over RTE and MRPC.
    assert np.isnan(claims.loc[GLUE_AVG, "best_method"])
    assert claims.loc[GLUE_AVG, "paper_value"] == pytest.approx((71.2 + 87.7) / 2)
    assert any("best of 3" in note and "no valid significance test" in note for note in result.notes)
    assert result.figure is not None


def test_table1_roberta_large_uses_liu_et_al_and_compares_mrpc_on_f1() -> None:
    result = get_artifact("smart/table1").build(glue_runs("roberta-large"), CONTEXT)
    claims = result.claims.set_index("task")
    assert claims.loc["rte", "paper_baseline"] == 86.6 and claims.loc["rte", "paper_value"] == 92.0
    # Liu et al. give MRPC F1 only (90.9): the claim compares our F1 (accuracy + 10 here) with SMART's F1.
    mrpc = claims.loc["mrpc"]
    assert mrpc["metric"] == "f1" and mrpc["paper_metric"] == "MRPC f1"
    assert mrpc["paper_baseline"] == 90.9 and mrpc["paper_value"] == 92.1
    assert mrpc["mean_method"] == pytest.approx(82.0 + 0.2 / 3)
    assert claims.loc[GLUE_AVG, "paper_baseline"] == pytest.approx((86.6 + 90.9) / 2)
    assert claims.loc[GLUE_AVG, "paper_value"] == pytest.approx((92.0 + 92.1) / 2)
    # BERT-base keeps MRPC accuracy (BERT_ReImp has it).
    both = get_artifact("smart/table1").build(pd.concat([glue_runs(), glue_runs("roberta-large")]), CONTEXT)
    metrics = both.claims.set_index(["model", "task"])["metric"]
    assert metrics[("bert-base", "mrpc")] == "accuracy" and metrics[("roberta-large", "mrpc")] == "f1"


def test_paper_value_reads_the_csv() -> None:
    assert paper_value(TABLE1, "bert-base", "MNLI-m", "smart", "accuracy") == 85.6
    assert paper_value(TABLE1, "bert-base", "STS-B", "smart", "spearman") == 89.4
    assert paper_value(TABLE1, "bert-base", "WNLI", "smart", "accuracy") is None
    # Table 6 reports two training blocks with the same keys; the notes tell them apart.
    table6 = "Table 6 (arXiv v5; ANLI)"
    assert (
        paper_value(table6, "roberta-large", "ANLI-R2", "smart", "accuracy", "test", TABLE6_BLOCK_B) == 50.3
    )
    with pytest.raises(ValueError, match="values"):
        paper_value(table6, "roberta-large", "ANLI-R2", "smart", "accuracy", "test")


def test_table3_compares_mrpc_on_f1_and_claims_each_component() -> None:
    result = get_artifact("smart/table3").build(glue_runs(), CONTEXT)
    assert result.status == "regenerated"
    claims = result.claims
    mrpc = claims[
        (claims["task"] == "mrpc") & (claims["method"] == "smart") & (claims["baseline"] == "finetune")
    ]
    assert mrpc["metric"].item() == "f1" and mrpc["mean_method"].item() == pytest.approx(82.0 + 0.2 / 3)
    assert mrpc["paper_value"].item() == 91.3 and mrpc["paper_baseline"].item() == 89.0
    pairs = set(zip(claims["method"], claims["baseline"], strict=True))
    assert {("smart", "smart_no_rs"), ("smart", "smart_no_breg"), ("smart_no_rs", "finetune")} <= pairs
    rte = claims[(claims["task"] == "rte") & (claims["baseline"] == "smart_no_rs")]
    assert rte["paper_baseline"].item() == 70.8 and rte["paper_delta"].item() == pytest.approx(0.4)


def test_table3_not_run_without_an_ablation() -> None:
    runs = glue_runs()
    result = get_artifact("smart/table3").build(runs[runs["method"].isin(["finetune", "smart"])], CONTEXT)
    assert result.status == "not run" and "smart_no_rs" in result.reason


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("smart/table5", ["snli_1.0_train.jsonl", "stanfordnlp/snli", "allenai/scitail"]),
        ("smart/table6", ["anli_v1.0/R1/train.jsonl", "facebook/anli"]),
        ("smart/figure2", ["MNLI/dev_matched.tsv", "nyu-mll/glue", "label1..label5"]),
        ("smart/table4", ["MT-DNN", "Hub"]),
    ],
)
def test_artifacts_without_their_data_say_which_files_they_need(key: str, named: list[str]) -> None:
    result = get_artifact(key).build(glue_runs(), CONTEXT)
    assert result.status == "not run"
    for text in named:
        assert text in result.reason, (key, text)


def test_table5_takes_the_bert_baseline_per_fraction_and_smart_only_at_full_data() -> None:
    rows = [
        run_row("bert-base", task, method, seed, 60.0 + (3 if method == "smart" else 0) + seed)
        for task in ("snli@0.001", "snli", "scitail@0.01")
        for method in ("finetune", "smart")
        for seed in (1, 2, 3)
    ]
    result = get_artifact("smart/table5").build(pd.DataFrame(rows), CONTEXT)
    claims = result.claims.set_index("task")
    assert GLUE_AVG not in claims.index
    assert claims.loc["snli@0.001", "paper_baseline"] == 52.5 and pd.isna(
        claims.loc["snli@0.001", "paper_value"]
    )
    assert claims.loc["scitail@0.01", "paper_baseline"] == 82.2
    # 100%: SMART on BERT-base is in Table 7 (91.4 vs 91.0).
    assert claims.loc["snli", "paper_value"] == 91.4 and claims.loc["snli", "paper_baseline"] == 91.0


def test_table6_claims_every_round_and_split_of_block_b() -> None:
    rows = []
    for method, shift in (("finetune", 0.0), ("smart", 3.0)):
        for seed in (1, 2, 3):
            metrics = {
                k: 50.0 + shift + seed for k in ("r1", "r2", "r3", "test", "test_r1", "test_r2", "test_r3")
            }
            rows.append(
                run_row(
                    "roberta-large",
                    "anli",
                    method,
                    seed,
                    50.0 + shift + seed,
                    **{f"accuracy_{k}": v for k, v in metrics.items()},
                )
            )
    result = get_artifact("smart/table6").build(pd.DataFrame(rows), CONTEXT)
    claims = result.claims.set_index("task")
    assert len(claims) == 8
    assert (
        claims.loc["ANLI-All test", "paper_value"] == 56.9
        and claims.loc["ANLI-All test", "paper_baseline"] == 51.9
    )
    assert claims.loc["ANLI-R1 dev", "paper_value"] == 74.2 and pd.isna(
        claims.loc["ANLI-R1 dev", "paper_baseline"]
    )
    assert claims.loc["ANLI-R3 test", "mean_method"] == pytest.approx(55.0)


ANNOTATED = [  # gold, votes of five annotators
    ("entailment", ["entailment"] * 5),
    ("neutral", ["neutral"] * 4 + ["entailment"]),
    ("contradiction", ["contradiction"] * 3 + ["neutral"] * 2),
    ("entailment", ["entailment"] * 3 + ["neutral", "contradiction"]),
]


def write_annotated_mnli(data_dir: Path) -> None:
    header = ["pairID", "sentence1", "sentence2", "gold_label", *(f"label{i}" for i in range(1, 6))]
    lines = ["\t".join(header)]
    for i, (gold, votes) in enumerate(ANNOTATED):
        lines.append("\t".join([f"p{i}", f"premise {i}", f"hypothesis {i}", gold, *votes]))
    for name in ("dev_matched.tsv", "dev_mismatched.tsv"):
        (data_dir / "glue" / "MNLI").mkdir(parents=True, exist_ok=True)
        (data_dir / "glue" / "MNLI" / name).write_text("\n".join(lines) + "\n")


def test_figure2_buckets_predictions_by_annotator_agreement(tmp_path: Path) -> None:
    from robustft.data import load_mnli_annotations

    data_dir = tmp_path / "data"
    write_annotated_mnli(data_dir)
    annotations = load_mnli_annotations("dev", data_dir)
    labels = [0, 1, 2, 0]
    rows = []
    for method, wrong in (("finetune", {2, 3}), ("smart", {3})):
        for seed in (1, 2):
            run_dir = tmp_path / "runs" / method / f"seed{seed}"
            run_dir.mkdir(parents=True)
            (run_dir / "run.json").write_text(json.dumps({"spec": {"data_dir": str(data_dir)}}))
            records = []
            for split in ("dev", "dev_mm"):
                for i, label in enumerate(labels):
                    prediction = (label + 1) % 3 if i in wrong else label
                    probs = [0.1, 0.1, 0.1]
                    probs[prediction] = 0.8
                    records.append(
                        {"split": split, "index": i, "label": label, "prediction": prediction, "probs": probs}
                    )
            (run_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            rows.append({**run_row("roberta-large", "mnli", method, seed, 50.0), "run_dir": str(run_dir)})
    runs = pd.DataFrame(rows)

    # One run's table: example 0 is 5/0/0, 1 is 4/1/0, 2 is 3/2/0, 3 is 3/1/1.
    table = agreement_table(
        pd.read_json(Path(rows[0]["run_dir"]) / "predictions.jsonl", lines=True).head(4), annotations
    )
    by_bucket = table.set_index("bucket")
    assert by_bucket.loc["All", "accuracy"] == 50.0 and by_bucket.loc["3/2/0", "accuracy"] == 0.0
    # 5/0/0: p = (1, 0, 0), f = (0.8, 0.1, 0.1): −Σ p log f = −log 0.8.
    assert by_bucket.loc["5/0/0", "kl_divergence"] == pytest.approx(-np.log(0.8))
    assert by_bucket.loc["4/1/0", "kl_divergence"] == pytest.approx(-(0.8 * np.log(0.8) + 0.2 * np.log(0.1)))

    result = get_artifact("smart/figure2").build(runs, CONTEXT)
    assert result.status == "regenerated", result.reason
    claims = result.claims.set_index("task")
    assert (
        claims.loc["MNLI-m All acc", "mean_method"] == 75.0
        and claims.loc["MNLI-m All acc", "mean_baseline"] == 50.0
    )
    assert claims.loc["MNLI-m 3/2/0 acc", "paper_value"] == 67.4
    assert claims.loc["MNLI-mm 3/1/1 KL", "paper_baseline"] == 1.15
    assert result.figure is not None

    # Predictions of a subsampled dev set cannot be bucketed: not run, with the reason.
    short = runs.copy()
    for run_dir in short["run_dir"]:
        path = Path(run_dir) / "predictions.jsonl"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:3]))
    result = get_artifact("smart/figure2").build(short, CONTEXT)
    assert result.status == "not run" and "max_eval_samples" in result.reason


def test_figure2_without_predictions_says_how_to_get_them(tmp_path: Path) -> None:
    runs = pd.DataFrame(
        [
            {**run_row("roberta-large", "mnli", method, 1, 90.0), "run_dir": str(tmp_path / method)}
            for method in ("finetune", "smart")
        ]
    )
    result = get_artifact("smart/figure2").build(runs, CONTEXT)
    assert result.status == "not run" and "save_predictions: true" in result.reason


def test_the_main_report_reads_table1_on_our_primary_metric() -> None:
    """Table 1 prints MRPC accuracy and F1 for one key: the report takes our primary metric (accuracy)."""
    from robustft.report import ReportSpec
    from robustft.report.glue import _paper_delta, _paper_number

    spec = ReportSpec(
        title="t",
        paper="SMART",
        artifact=TABLE1,
        paper_model={"bert-base": "bert-base"},
        paper_method={"finetune": "finetune (BERT_ReImp, SMART authors' reimplementation)"},
    )
    assert _paper_number(spec, "bert-base", "mrpc", "smart").value == 87.7
    assert _paper_number(spec, "bert-base", "stsb", "smart").value == 90.0  # Pearson, not Spearman
    assert _paper_delta(spec, "bert-base", "rte", "smart") == pytest.approx(71.2 - 63.5)


def test_the_main_report_reads_each_models_own_baseline_row() -> None:
    """SMART Table 1's baseline row is BERT_ReImp for BERT-base and Liu et al.'s for RoBERTa-large."""
    from robustft.report import ReportSpec
    from robustft.report.glue import _paper_delta, _paper_number

    spec = ReportSpec.from_dict(
        {
            "title": "t",
            "paper": "SMART",
            "artifact": TABLE1,
            "paper_model": {"bert-base": "bert-base", "roberta-large": "roberta-large"},
            "paper_method": {
                "finetune": {
                    "bert-base": "finetune (BERT_ReImp, SMART authors' reimplementation)",
                    "roberta-large": "finetune (as reported by Liu et al. 2019)",
                }
            },
        }
    )
    assert _paper_number(spec, "bert-base", "rte", "finetune").value == 63.5
    assert _paper_number(spec, "roberta-large", "rte", "finetune").value == 86.6
    assert _paper_delta(spec, "roberta-large", "rte", "smart") == pytest.approx(92.0 - 86.6)
    # Liu et al.'s MRPC is F1 only: SMART is read on F1 too, so the paper Δ is F1 − F1.
    assert _paper_number(spec, "roberta-large", "mrpc", "smart").metric == "f1"
    assert _paper_delta(spec, "roberta-large", "mrpc", "smart") == pytest.approx(92.1 - 90.9)
    assert _paper_number(spec, "bert-base", "mrpc", "smart").value == 87.7  # accuracy, as before
