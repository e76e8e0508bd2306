"""examples/fraud-detection: the load script, run as its README says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.examples.support import copy_example, run_script
from tests.servers import free_port

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def test_fraud_detection_alerts_open_cases_and_every_order_is_audited(tmp_path: Path) -> None:
    folder = copy_example("fraud-detection", tmp_path)
    env = {
        "BROKER_PORT": str(free_port()),
        "HTTP_PORT": str(free_port()),
        "CASES_PORT": str(free_port()),
        "CHECKOUT_SECRET": "test-secret",
    }
    result = run_script(folder, "load.py", env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "checkout: 606 orders, 30 of them fraudulent (planted)"
    assert lines[1] == "posted 1212 signed webhooks"
    assert lines[3].startswith("alerts: precision ") and " recall " in lines[3]
    figures = json.loads((folder / "data" / "result.json").read_text())
    assert figures["gateway_exit"] == 0
    # every order decided exactly once, every alert became exactly one case
    assert figures["decisions"] == figures["orders"] == 606
    assert figures["decided_once"] is True and figures["cases_match_alerts"] is True
    # the rules find most planted fraud without drowning the team in false alarms
    assert figures["precision"] >= 0.5 and figures["recall"] >= 0.3
    assert figures["true_positives"] == round(figures["precision"] * figures["alerts"])
    assert figures["decision_ms"]["p99"] >= figures["decision_ms"]["p50"] > 0
    # the audit trail (file sink) holds each decision with its reasons
    audit = [
        json.loads(line)
        for path in sorted((folder / "data" / "audit").glob("shop.decisions-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert len(audit) == 606
    assert all((d["decision"] == "review") == (d["score"] >= 50) for d in audit)
    assert sum(d["decision"] == "review" for d in audit) == figures["alerts"]
    assert set(figures["false_alarms"]) <= {d["order_id"] for d in audit if d["score"] >= 50}
    assert all(d["reasons"] for d in audit if d["score"] > 0)
