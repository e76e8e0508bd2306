"""Load the fraud-detection pipeline with a realistic mix and planted fraud; score it.

    python load.py

Starts a small case-management service (the http sink's endpoint) and ``backbone run
backbone.yaml``, then plays a checkout: 150 customers placing about 600 orders over
about six hours of event time, each an order and a payment posted to the signed webhooks.
Planted among them: stolen cards used again and again within minutes, and account
takeovers (a large amount from abroad); and legitimate look-alikes: travellers paying
abroad, customers making one big purchase. When every order is decided it prints the
precision and recall of the alerts (cases opened), the decision latency (payment or
order posted -> decision made) and the webhooks' answer times, stops the gateway and
writes the figures to ``data/result.json``.

Environment: ``BROKER_PORT`` (19201), ``HTTP_PORT`` (18201), ``CASES_PORT`` (18202),
``CHECKOUT_SECRET`` (``demo-secret``), ``SEED`` (1).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
HTTP_PORT = int(os.environ.get("HTTP_PORT", "18201"))
CASES_PORT = int(os.environ.get("CASES_PORT", "18202"))
SECRET = os.environ.get("CHECKOUT_SECRET", "demo-secret").encode()
COUNTRIES = ["DE", "FR", "AT", "NL", "ES", "IT", "PL", "SE"]


def say(text: str) -> None:
    print(text, flush=True)


class Cases(BaseHTTPRequestHandler):
    """The case-management service: POST /cases stores a case, answers 201."""

    opened: list[dict[str, Any]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.lock:
            self.opened.append(json.loads(body))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def scenario(rng: random.Random) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], set[str]]:
    """(order, payment) pairs in checkout order, and the ids of the fraudulent ones."""
    customers = []
    for n in range(150):
        home = rng.choice(COUNTRIES)
        customers.append(
            {
                "customer": f"c{n:03d}",
                "home": home,
                "card": f"card-{n:03d}",
                "usual": rng.uniform(20, 150),
            }
        )
    rows: list[tuple[str, dict[str, Any], str]] = []  # (kind, customer, label)
    for _ in range(540):
        rows.append(("normal", rng.choice(customers), "legit"))
    rng.shuffle(rows)
    late = len(rows) // 2  # planted cases go to the second half (customers have a history)

    def plant(kind: str, label: str, count: int) -> None:
        for _ in range(count):
            rows.insert(rng.randrange(late, len(rows)), (kind, rng.choice(customers), label))

    plant("takeover", "fraud", 10)  # big amount, from abroad
    plant("traveller", "legit", 25)  # abroad, usual amount
    plant("big-purchase", "legit", 8)  # at home, big amount
    plant("big-abroad", "legit", 3)  # abroad and big: a false positive
    pairs, fraud = [], set()
    clock = 1_700_000_000.0
    for i, (kind, c, label) in enumerate(rows):
        clock += rng.uniform(20, 60)  # about 6 hours of checkout
        order_id = f"o{i:04d}"
        amount = max(1.0, rng.gauss(c["usual"], c["usual"] / 5))
        ip, card, card_country = c["home"], c["card"], c["home"]
        if kind in ("takeover", "big-purchase", "big-abroad"):
            amount = c["usual"] * rng.uniform(7, 12)
        if kind in ("takeover", "traveller", "big-abroad"):
            ip = rng.choice([x for x in COUNTRIES if x != c["home"]])
        pairs.append(pair(order_id, c["customer"], amount, ip, card, card_country, clock))
        if label == "fraud":
            fraud.add(order_id)
    # stolen cards: each used 4 times within a few minutes, on different accounts
    for s in range(5):
        victim = rng.choice(customers)
        at = rng.randrange(len(pairs) // 2, len(pairs) - 20)
        stamp = pairs[at][1]["ts"]
        for k in range(4):
            order_id = f"s{s}{k}"
            buyer = rng.choice(customers)
            stamp += rng.uniform(20, 60)
            item = pair(
                order_id,
                buyer["customer"],
                rng.uniform(30, 90),
                buyer["home"],
                victim["card"],
                victim["home"],
                stamp,
            )
            pairs.insert(at + 1 + 3 * k, item)
            fraud.add(order_id)
    return pairs, fraud


def pair(
    order_id: str, customer: str, amount: float, ip: str, card: str, card_country: str, ts: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    order = {
        "order_id": order_id,
        "customer": customer,
        "amount": round(amount, 2),
        "ip_country": ip,
        "ts": ts,
    }
    payment = {"order_id": order_id, "card": card, "card_country": card_country, "ts": ts}
    return order, payment


def post(client: httpx.Client, path: str, value: dict[str, Any]) -> float:
    value["sent_at"] = time.time()
    body = json.dumps(value).encode()
    signature = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    started = time.monotonic()
    answer = client.post(
        f"http://127.0.0.1:{HTTP_PORT}{path}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Signature": f"sha256={signature}",
            "Idempotency-Key": f"{path}/{value['order_id']}",
        },
    )
    elapsed = time.monotonic() - started
    answer.raise_for_status()
    return elapsed


def decisions() -> list[dict[str, Any]]:
    found = []
    for path in sorted((DATA / "audit").glob("shop.decisions-*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines() if line]
    return found


def wait_for(check: Any, what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {within:.0f} s waiting for {what}")
        time.sleep(0.05)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    (DATA / "audit").mkdir(parents=True)
    cases = ThreadingHTTPServer(("127.0.0.1", CASES_PORT), Cases)
    threading.Thread(target=cases.serve_forever, daemon=True).start()
    log = (DATA / "gateway.log").open("wb")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "backbone", "run", "backbone.yaml"],
        cwd=HERE,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    result: dict[str, Any] = {}
    try:
        wait_for(lambda: listening(HTTP_PORT) or gateway.poll() is not None, "the webhooks", 60)
        if gateway.poll() is not None:
            raise SystemExit(f"backbone run exited {gateway.returncode}: see data/gateway.log")
        pairs, fraud = scenario(random.Random(int(os.environ.get("SEED", "1"))))
        say(f"checkout: {len(pairs)} orders, {len(fraud)} of them fraudulent (planted)")
        answers: list[float] = []
        with httpx.Client(timeout=30) as client:
            for order, payment in pairs:
                answers.append(post(client, "/hooks/orders", order))
                answers.append(post(client, "/hooks/payments", payment))
        say(f"posted {len(answers)} signed webhooks")
        wait_for(lambda: len(decisions()) >= len(pairs), "every decision in the audit trail", 90)
        made = decisions()
        review = {d["order_id"] for d in made if d["decision"] == "review"}
        wait_for(lambda: len(Cases.opened) >= len(review), "a case per alert", 60)
        alerted = {c["order_id"] for c in Cases.opened}
        caught = alerted & fraud
        precision = len(caught) / len(alerted) if alerted else 0.0
        recall = len(caught) / len(fraud)
        latency = [(d["decided_at"] - d["sent_at"]) * 1000 for d in made]
        answers_ms = [a * 1000 for a in answers]
        result = {
            "orders": len(pairs),
            "fraud": len(fraud),
            "decisions": len(made),
            "decided_once": len({d["order_id"] for d in made}) == len(made),
            "alerts": len(alerted),
            "cases_match_alerts": alerted == review,
            "true_positives": len(caught),
            "precision": round(precision, 3),
            "recall": round(recall, 3),
            "decision_ms": {
                "p50": round(percentile(latency, 0.5), 1),
                "p99": round(percentile(latency, 0.99), 1),
            },
            "webhook_ms": {
                "p50": round(percentile(answers_ms, 0.5), 1),
                "p99": round(percentile(answers_ms, 0.99), 1),
            },
            "missed": sorted(fraud - alerted),
            "false_alarms": sorted(alerted - fraud),
        }
        say(f"decisions: {len(made)} in the audit trail (data/audit), {len(alerted)} cases opened")
        say(
            f"alerts: precision {precision:.2f} ({len(caught)} of {len(alerted)} were fraud), "
            f"recall {recall:.2f} ({len(caught)} of {len(fraud)} frauds caught)"
        )
        say(
            f"decision latency: p50 {result['decision_ms']['p50']} ms, "
            f"p99 {result['decision_ms']['p99']} ms (posted -> decided)"
        )
        say(
            f"webhook answers: p50 {result['webhook_ms']['p50']} ms, "
            f"p99 {result['webhook_ms']['p99']} ms (stored on the broker, fsynced)"
        )
    finally:
        gateway.send_signal(signal.SIGINT)
        code = gateway.wait(60)
        log.close()
        cases.shutdown()
    result["gateway_exit"] = code
    (DATA / "result.json").write_text(json.dumps(result, indent=2))
    say(f"gateway stopped (exit {code}); figures in data/result.json")


if __name__ == "__main__":
    main()
