"""README.md stays true: its YAML configurations validate and its Python example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from backbone.config import load_config
from backbone.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_examples() -> None:
    assert len(YAML_BLOCKS) >= 3
    assert len(PYTHON_BLOCKS) >= 1


@pytest.mark.parametrize("index", range(len(YAML_BLOCKS)))
def test_readme_yaml_validates(index: int, tmp_path: Path) -> None:
    path = tmp_path / f"readme-{index}.yaml"
    path.write_text(YAML_BLOCKS[index], encoding="utf-8")
    config = load_config(path, Registry.from_entry_points(), env={})
    assert config.sources or config.sinks


def test_readme_python_example_runs(tmp_path: Path) -> None:
    code = PYTHON_BLOCKS[0]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "orders" in result.stdout and '{"id": 1}' in result.stdout
