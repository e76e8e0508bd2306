"""Every example: its YAML validates, its README has one command to run, the README's
architecture picture is rendered from its source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backbone.config import load_config
from backbone.registry import Registry
from tests.examples.support import EXAMPLES, ROOT

SCENARIOS = ["etl-migration", "fraud-detection", "replay-new-sink"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*/*.yaml")), ids=lambda p: p.parent.name)
def test_example_config_validates(path: Path) -> None:
    config = load_config(path, Registry.from_entry_points(), env={})
    assert config.sources or config.sinks
    listen = config.broker.embedded.listen if config.broker.embedded else ""
    assert listen and not str(listen).endswith(":9092")  # its own port, not a local Kafka's


@pytest.mark.parametrize("name", SCENARIOS)
def test_example_readme_has_one_run_command(name: str) -> None:
    text = (EXAMPLES / name / "README.md").read_text()
    run = text.split("## Run", 1)[1].split("\n## ", 1)[0]
    first = re.search(r"```sh\n(.*?)```", run, flags=re.S)
    assert first is not None and first.group(1).strip().count("\n") == 0
    script = first.group(1).split()[1]
    assert (EXAMPLES / name / script).is_file()
    assert "## What you should see" in text
    assert f"(examples/{name})" in (ROOT / "README.md").read_text()


def test_architecture_picture_is_rendered_from_its_source() -> None:
    dot = (ROOT / "docs" / "architecture.dot").read_text()
    svg = (ROOT / "docs" / "architecture.svg").read_text()
    nodes = set(re.findall(r"^\s+(\w+)\s+\[label=", dot, flags=re.M))
    assert len(nodes) >= 20
    assert set(re.findall(r"<title>(\w+)</title>", svg)) >= nodes  # re-run `make diagram`
    assert "docs/architecture.svg" in (ROOT / "README.md").read_text()
