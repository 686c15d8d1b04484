"""Job benchmarks against the profile's requests: real Snakemake benchmark files, read and judged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from robustft.cli import main
from robustft.errors import ConfigError
from robustft.resource_usage import format_usage, profile_requests, read_benchmarks, usage_table
from tests.helpers import REPO

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
# Two jobs of one rule; the second holds ~200 MB, so the peaks differ clearly.
SNAKEFILE = """
rule all:
    input: ["out/small.txt", "out/large.txt"]

rule hold:
    output: "out/{size}.txt"
    benchmark: "bench/hold/{size}.tsv"
    params: mb=lambda wildcards: 200 if wildcards.size == "large" else 1
    # Bytes written, not a calloc'ed bytearray, whose untouched pages would not count as resident.
    shell: "PYTHON -c 'import time; _ = bytes(1) * ({params.mb} << 20); time.sleep(2)' && touch {output}"
"""


@pytest.fixture(scope="module")
def benchmarks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("benchmarked")
    (workdir / "Snakefile").write_text(SNAKEFILE.replace("PYTHON", sys.executable))
    subprocess.run(
        [str(SNAKEMAKE), "--cores", "1", "--quiet", "all"], cwd=workdir, check=True, capture_output=True
    )
    return workdir / "bench"


def write_profile(path: Path, mem_mb: str, runtime: str) -> Path:
    path.write_text(f"set-resources:\n  hold:\n    mem_mb: {mem_mb}\n    runtime: {runtime}\n")
    return path


def test_snakemakes_benchmark_files_are_read_per_rule_and_job(benchmarks: Path) -> None:
    table = read_benchmarks(benchmarks)
    assert sorted(table["job"]) == ["large", "small"] and set(table["rule"]) == {"hold"}
    by_job = table.set_index("job")
    assert by_job.loc["large", "max_rss"] > by_job.loc["small", "max_rss"] + 100  # MB
    assert (table["s"] >= 2).all()


def test_a_request_under_the_peak_is_over_and_a_huge_one_generous(benchmarks: Path, tmp_path: Path) -> None:
    used = read_benchmarks(benchmarks)
    tight = usage_table(used, profile_requests(write_profile(tmp_path / "tight.yaml", "50 * attempt", "1")))
    assert tight.loc[0, "memory"] == "over" and tight.loc[0, "mem_mb_request"] == 50
    assert tight.loc[0, "time"] == "generous"  # a minute against ~2 s
    huge = usage_table(used, profile_requests(write_profile(tmp_path / "huge.yaml", "64000", "60")))
    assert huge.loc[0, "memory"] == "generous"
    # Snakemake rounds a profile's runtime to whole minutes, so a request under the jobs' ~2 s is given here.
    assert usage_table(used, {"hold": {"runtime": 0.01}}).loc[0, "time"] == "over"
    fitting = usage_table(used, {"hold": {"mem_mb": used["max_rss"].max() * 1.5}})
    assert fitting.loc[0, "memory"] == "ok" and fitting.loc[0, "time"] == "not in profile"


def test_the_shipped_profile_is_evaluated_by_attempt() -> None:
    profile = REPO / "profiles" / "default" / "config.yaml"
    first, second = profile_requests(profile, 1), profile_requests(profile, 2)
    assert second["train"]["mem_mb"] == 2 * first["train"]["mem_mb"] > 0
    assert {"train", "xtreme_train"} <= set(first)


def test_a_file_that_is_not_a_benchmark_is_named(tmp_path: Path) -> None:
    (tmp_path / "train" / "m").mkdir(parents=True)
    bad = tmp_path / "train" / "m" / "x.tsv"
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(ConfigError, match=str(bad)):
        read_benchmarks(tmp_path)


def test_the_command_prints_and_writes_the_table(benchmarks: Path, tmp_path: Path, capsys) -> None:
    profile = write_profile(tmp_path / "profile.yaml", "8000", "60")
    out = tmp_path / "usage.csv"
    assert (
        main(
            ["resource-usage", "--benchmarks", str(benchmarks), "--profile", str(profile), "--out", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "hold" in printed and "generous" in printed
    assert pd.read_csv(out).loc[0, "jobs"] == 2
    assert format_usage(usage_table(read_benchmarks(tmp_path / "none"), {})).startswith("no benchmark files")
