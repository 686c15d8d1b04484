"""The config hash that ties a run directory to the spec it was trained with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustft import provenance
from robustft.provenance import config_hash, cpu_model, hardware, summarize_runs


def test_config_hash_ignores_key_order_of_settings() -> None:
    first = {
        "model": "m",
        "train": {"batch_size": 16, "epochs": 1},
        "components": {"smart": {"a": 1, "b": 2}},
    }
    second = {
        "components": {"smart": {"b": 2, "a": 1}},
        "train": {"epochs": 1, "batch_size": 16},
        "model": "m",
    }
    assert config_hash(first) == config_hash(second)


def test_config_hash_sees_the_order_of_components() -> None:
    forward = {"method": "combo", "components": {"noisytune": {}, "smart": {}}}
    backward = {"method": "combo", "components": {"smart": {}, "noisytune": {}}}
    assert config_hash(forward) != config_hash(backward)


def test_config_hash_sees_a_changed_setting() -> None:
    base = {"components": {"noisytune": {"noise_lambda": 0.15}}}
    assert config_hash(base) != config_hash({"components": {"noisytune": {"noise_lambda": 0.1}}})


def test_a_table_of_other_runs_is_refused_when_the_report_is_built(tmp_path: Path) -> None:
    """A runs.csv copied or restored from another config (Snakemake's metadata cannot tell) names run
    directories the report's config does not ask for: the report stops, saying how many and which."""
    import pandas as pd
    import pytest

    from robustft.errors import TableMismatchError
    from robustft.provenance import check_table_runs

    ours = [
        "results/runs/minilm-l6/rte/finetune/seed1-0000aaaa",
        "results/runs/minilm-l6/rte/finetune/seed2-0000aaaa",
    ]
    table = tmp_path / "runs.csv"
    pd.DataFrame({"run_dir": ours}).to_csv(table, index=False)
    check_table_runs(table, ours)  # exactly the config's runs: fine

    theirs = [path.replace("0000aaaa", "1111bbbb") for path in ours]
    pd.DataFrame({"run_dir": theirs[:1] + ours[1:]}).to_csv(table, index=False)
    with pytest.raises(TableMismatchError) as error:
        check_table_runs(table, ours)
    message = str(error.value)
    assert "1 run(s) that the config does not ask for" in message and theirs[0] in message
    assert "1 run(s) of the config that the table lacks" in message and ours[0] in message


def test_grid_manifest_is_named_by_the_set_of_runs(tmp_path: Path) -> None:
    """A changed grid names a new manifest (so the workflow rebuilds the table); order does not matter."""
    from robustft.provenance import grid_manifest_path

    runs = ["results/runs/m/sst2/finetune/seed1-aaaa0000", "results/runs/m/sst2/finetune/seed2-aaaa0000"]
    same = grid_manifest_path(tmp_path, "runs", list(reversed(runs)))
    assert grid_manifest_path(tmp_path, "runs", runs) == same
    assert same.name.startswith("runs-grid-") and same.suffix == ".json"
    assert grid_manifest_path(tmp_path, "runs", runs[:1]) != same
    assert grid_manifest_path(tmp_path, "xtreme", runs) != same


def test_write_grid_manifest_replaces_the_earlier_grid_only(tmp_path: Path) -> None:
    from robustft.provenance import write_grid_manifest

    old = write_grid_manifest(tmp_path, "runs", ["r/seed1-a"])
    other_table = write_grid_manifest(tmp_path, "xtreme", ["x/seed1-a"])
    new = write_grid_manifest(tmp_path, "runs", ["r/seed1-a", "r/seed2-a"])
    assert not old.exists() and new.exists() and other_table.exists()
    record = json.loads(new.read_text())
    assert record == {"table": "runs.csv", "runs": 2, "run_dirs": ["r/seed1-a", "r/seed2-a"]}


def test_summary_names_the_cpu_model_and_falls_back_to_the_architecture(tmp_path: Path) -> None:
    hardware = {"processor": "x86_64", "cpu_count": 2}
    for name, record in {"new": {**hardware, "cpu_model": "AMD EPYC 7B13"}, "old": hardware}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps({"hardware": record, "wall_time_s": 1.0}))
    (tmp_path / "runs.csv").write_text(f"run_dir\n{tmp_path / 'new'}\n{tmp_path / 'old'}\n")
    summary = summarize_runs(tmp_path, "abc")
    assert summary["hardware"].startswith("AMD EPYC 7B13; x86_64 (2 CPUs)")


def test_cpu_model_reads_the_model_name_on_linux() -> None:
    name = cpu_model()
    if Path("/proc/cpuinfo").exists():
        assert name and name != "x86_64"
    assert "cpu_model" in hardware() and hardware()["cpu_model"] == name


def test_cpu_generation_tells_two_epyc_generations_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two machines of one cloud kind both say "AMD EPYC"; only the numbers below differ.
    def cpuinfo(model: int) -> list[str]:
        return ["processor\t: 0", "cpu family\t: 25", f"model\t\t: {model}", "model name\t: AMD EPYC",
                "stepping\t: 1", "processor\t: 1", "cpu family\t: 99"]  # fmt: skip

    monkeypatch.setattr(provenance, "_cpuinfo", lambda: cpuinfo(1))
    zen3 = provenance.cpu_generation()
    monkeypatch.setattr(provenance, "_cpuinfo", lambda: cpuinfo(17))
    zen4 = provenance.cpu_generation()
    assert (zen3, zen4) == ("family 25 model 1 stepping 1", "family 25 model 17 stepping 1")
    assert provenance.cpu_model() == "AMD EPYC"
    monkeypatch.setattr(provenance, "_cpuinfo", lambda: ["model name\t: Apple M2"])
    assert provenance.cpu_generation() is None


def test_hardware_records_the_kernels_that_set_the_speed() -> None:
    import torch

    record = hardware()
    assert record["cpu_capability"] == str(torch.backends.cpu.get_cpu_capability())
    assert isinstance(record["cpu_fast_bf16"], bool)
    if Path("/proc/cpuinfo").exists() and "cpu family" in Path("/proc/cpuinfo").read_text():
        assert record["cpu_generation"].startswith("family ")


def test_cpu_description_adds_the_generation_and_bf16_kernels_when_recorded() -> None:
    old = {"cpu_model": "AMD EPYC", "processor": "x86_64"}
    new = {**old, "cpu_generation": "family 25 model 17 stepping 1", "cpu_capability": "AVX512"}
    new["cpu_fast_bf16"] = True
    slow = {**old, "cpu_generation": "family 25 model 1 stepping 1", "cpu_capability": "AVX2"}
    slow["cpu_fast_bf16"] = False
    assert provenance.cpu_description(old) == "AMD EPYC"
    assert provenance.cpu_description(new) == "AMD EPYC [family 25 model 17 stepping 1, AVX512, fast bf16]"
    assert provenance.cpu_description(slow) == "AMD EPYC [family 25 model 1 stepping 1, AVX2, no fast bf16]"
    assert provenance.cpu_description({"processor": "x86_64"}) == "x86_64"
