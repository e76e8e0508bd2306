"""Run an example as its README says: ``python <script>`` in a copy of its folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def copy_example(name: str, tmp_path: Path) -> Path:
    """The example folder copied to ``tmp_path/name`` (without a ``data`` folder)."""
    target = tmp_path / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("data", "__pycache__"))
    return target


def run_script(
    folder: Path, script: str, env: dict[str, str], *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``python script args`` in ``folder`` (``backbone`` on PATH as after activation)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=folder,
        env={**os.environ, "PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
