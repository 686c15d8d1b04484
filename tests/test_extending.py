"""docs/extending.md's steps, done as written: its code for a new task and a new method component is run
as it stands in the guide, and one run trains them through `robustft train`.

Nothing is written into src/: the code the guide adds to `data/glue.py` and `methods/settings.py` runs in
a copy of those modules' namespaces (what the addition would see there), the guide's new module
`methods/headscale.py` is written to a temporary folder added to the `robustft.methods` package path, and
every registry entry, module and attribute this creates is removed after the test.
"""

from __future__ import annotations
import __future__

import json
import math
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import robustft.methods
from robustft.cli import main
from robustft.data import TASKS
from robustft.data import glue as glue_module
from robustft.errors import ConfigError
from robustft.methods import COMPONENTS
from robustft.methods import settings as settings_module
from robustft.methods.base import component_class
from robustft.workflow_config import load_config

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
TASK, LOCAL_DIR, COMPONENT = "mytask", "MyTask", "headscale"  # the names the guide's code registers
IMPLEMENTATION_MODULE = f"robustft.methods.{COMPONENT}"
TRAIN_ROWS, DEV_ROWS = 24, 8
# The tiny model's settings of the other training tests; fp32, so a zero head's first loss is exactly ln 2.
TRAIN_SETTINGS = {"batch_size": 8, "eval_batch_size": 16, "max_seq_length": 32, "precision": "fp32"}


def guide_code() -> dict[str, str]:
    """The guide's Python blocks that start with `# <file>: ...`, by that file (dedented: the blocks sit
    inside numbered steps)."""
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", GUIDE.read_text(), flags=re.MULTILINE | re.DOTALL)
    code = {}
    for _, block in blocks:
        block = textwrap.dedent(block)
        first_line = block.splitlines()[0]
        if first_line.startswith("# src/"):
            code[first_line[2:].split(":")[0]] = block
    return code


def run_as_part_of(module, code: str, filename: str) -> dict:
    """Run `code` as if appended to `module`: in a copy of its globals, with its future import."""
    namespace = dict(vars(module))
    flags = __future__.annotations.compiler_flag
    exec(compile(code, filename, "exec", flags=flags, dont_inherit=True), namespace)  # the guide's own code
    return namespace


def remove_at_teardown(monkeypatch: pytest.MonkeyPatch, mapping: dict, key: str) -> None:
    """Teardown deletes `key` from `mapping`, whatever the test registers under it: monkeypatch records
    the key as absent (setitem) and the test then starts without it (delitem)."""
    assert key not in mapping, f"{key!r} is registered already"
    monkeypatch.setitem(mapping, key, None)
    monkeypatch.delitem(mapping, key)


@pytest.fixture
def guide_additions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Follow the guide's steps 1 and 2 for the task and the method; undo everything afterwards."""
    code = guide_code()
    for registry, key in ((TASKS, TASK), (COMPONENTS, COMPONENT), (sys.modules, IMPLEMENTATION_MODULE)):
        remove_at_teardown(monkeypatch, registry, key)
    monkeypatch.setattr(robustft.methods, COMPONENT, None, raising=False)  # the import sets it: undone
    monkeypatch.delattr(robustft.methods, COMPONENT)

    # Task, step 2: the TaskSpec added to data/glue.py.
    run_as_part_of(glue_module, code["src/robustft/data/glue.py"], "data/glue.py")

    # Method, step 1: the settings class added to methods/settings.py, where the implementation imports it.
    settings_names = run_as_part_of(
        settings_module, code["src/robustft/methods/settings.py"], "methods/settings.py"
    )
    settings_class = COMPONENTS[COMPONENT]
    monkeypatch.setattr(
        settings_module, settings_class.__name__, settings_names[settings_class.__name__], raising=False
    )

    # Method, step 2: the new module methods/headscale.py, in a folder of the robustft.methods package.
    package_dir = tmp_path / "methods"
    package_dir.mkdir()
    (package_dir / f"{COMPONENT}.py").write_text(code[f"src/robustft/methods/{COMPONENT}.py"])
    monkeypatch.setattr(robustft.methods, "__path__", [*robustft.methods.__path__, str(package_dir)])

    yield
    component_class.cache_clear()  # it caches the implementation by component name


def write_task_files(data_dir: Path) -> None:
    """Task, step 1: train.tsv and dev.tsv under <data_dir>/glue/MyTask/, with the registered columns."""
    spec = TASKS[TASK]
    folder = data_dir / spec.family / spec.local_dir
    folder.mkdir(parents=True)
    for name, rows in (("train.tsv", TRAIN_ROWS), ("dev.tsv", DEV_ROWS)):
        lines = ["\t".join([*spec.text_columns, spec.label_column])]
        for row in range(rows):
            label = spec.labels[row % 2]
            texts = [f"sentence {row} of column {column}, label {label}" for column in spec.text_columns]
            lines.append("\t".join([*texts, label]))
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_config(path: Path, model: str, data_dir: Path, factor: float) -> Path:
    config = {
        "data_dir": str(data_dir),
        "models": [model],
        "tasks": [TASK],
        "seeds": [1],
        "methods": {"finetune": {}, COMPONENT: {COMPONENT: {"factor": factor}}},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_guide_code_blocks_are_found() -> None:
    assert set(guide_code()) >= {
        "src/robustft/data/glue.py",
        "src/robustft/methods/settings.py",
        f"src/robustft/methods/{COMPONENT}.py",
    }


def test_a_task_and_a_method_added_as_the_guide_says_train(
    guide_additions: None,
    tiny_model: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir = tmp_path / "data"
    write_task_files(data_dir)
    assert TASKS[TASK].local_dir == LOCAL_DIR

    # Step 3 of each: `robustft list` shows them, and a config naming them passes the workflow's check
    # with the settings class alone (the implementation, and torch with it, is not imported).
    assert main(["list", "tasks"]) == 0 and main(["list", "methods"]) == 0
    listed = capsys.readouterr().out.split()
    assert TASK in listed and COMPONENT in listed
    config = load_config(write_config(tmp_path / "config.yaml", tiny_model, data_dir, factor=0.0))
    assert config["methods"][COMPONENT] == {COMPONENT: {"factor": 0.0}}
    assert IMPLEMENTATION_MODULE not in sys.modules
    with pytest.raises(ConfigError, match=rf"{COMPONENT}\.factor must be a finite number"):
        load_config(write_config(tmp_path / "bad.yaml", tiny_model, data_dir, factor=2.0))

    # One run through the users' entry point. factor 0 zeroes the head's weights (its bias starts at 0),
    # so the first training loss, before any update, is exactly ln 2 for two classes.
    out = tmp_path / "run"
    argv = ["train", "--model", tiny_model, "--task", TASK, "--method", COMPONENT, "--seed", "1"]
    argv += ["--out", str(out), "--data-dir", str(data_dir), "--epochs", "1"]
    argv += ["--train-config", json.dumps({**TRAIN_SETTINGS, "logging_steps": 1})]
    argv += ["--method-components", json.dumps({COMPONENT: {"factor": 0.0}})]
    assert main(argv) == 0, capsys.readouterr().err

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert (metrics["task"], metrics["method"]) == (TASK, COMPONENT)
    assert (metrics["n_train"], metrics["n_eval"]) == (TRAIN_ROWS, DEV_ROWS)  # the files written above
    assert set(metrics["metrics"]) == {"accuracy", "f1", "eval_loss"}

    run = json.loads((out / "run.json").read_text())
    assert run["data"]["train"] == f"local:{data_dir / 'glue' / LOCAL_DIR / 'train.tsv'}"
    assert run["method"] == {"name": COMPONENT, "components": [{COMPONENT: {"factor": 0.0}}]}
    assert run["method_log"] == {COMPONENT: {"factor": 0.0, "tensors_scaled": ["classifier.weight"]}}
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    first_loss = next(record["loss"] for record in history if "loss" in record and record["step"] == 1)
    assert first_loss == pytest.approx(math.log(2), abs=1e-6)  # factor 0.5 here gives 0.69271
