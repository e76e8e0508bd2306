"""The scoring processor: each order, once its payment is in, gets a risk score.

Rules (points add up; 50 or more sends the decision to ``shop.alerts`` too):

- card velocity: the card paid 2 or more other orders in the last 10 minutes of
  event time (a sliding window per card): +50;
- amount against the customer's usual: more than 5 times the median of the
  customer's previous orders (at least 3 of them): +40;
- country mismatch: the card's country differs from the country the checkout was
  used from (``ip_country``): +30.

Orders and payments arrive on two topics in either order; the first half waits in
memory for the second. State is in memory: after a restart the windows and the
customers' history start empty (a real deployment would keep them in a compacted
topic or a database). A redelivered order (at-least-once) is decided once.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict, deque
from typing import Any

from backbone import Event

WINDOW = 600.0  # seconds of event time
THRESHOLD = 50

_pending: dict[str, tuple[str, dict[str, Any]]] = {}  # order_id -> (topic, value)
_cards: dict[str, deque[tuple[float, str]]] = defaultdict(deque)  # card -> (ts, order_id)
_history: dict[str, list[float]] = defaultdict(list)  # customer -> amounts
_decided: set[str] = set()


def score(event: Event) -> list[Event] | None:
    value = event.value
    order_id = value["order_id"]
    if order_id in _decided:
        return None  # redelivered
    other = _pending.pop(order_id, None)
    if other is None or other[0] == event.input_topic:
        _pending[order_id] = (event.input_topic or "", value)
        return None
    order, payment = (value, other[1]) if event.input_topic == "shop.orders" else (other[1], value)
    _decided.add(order_id)
    points, reasons = 0, []

    window = _cards[payment["card"]]
    ts = float(payment["ts"])
    while window and window[0][0] < ts - WINDOW:
        window.popleft()
    recent = sum(1 for t, other_id in window if t <= ts and other_id != order_id)
    window.append((ts, order_id))
    if recent >= 2:
        points += 50
        reasons.append(f"card used for {recent} other orders in 10 min")

    amount, usual = float(order["amount"]), _history[order["customer"]]
    if len(usual) >= 3 and amount > 5 * statistics.median(usual):
        points += 40
        reasons.append(f"amount {amount:.2f} is {amount / statistics.median(usual):.0f}x usual")
    usual.append(amount)
    del usual[:-20]

    if payment["card_country"] != order["ip_country"]:
        points += 30
        reasons.append(f"card from {payment['card_country']}, checkout from {order['ip_country']}")

    decision = {
        "order_id": order_id,
        "customer": order["customer"],
        "amount": amount,
        "score": points,
        "decision": "review" if points >= THRESHOLD else "approve",
        "reasons": reasons,
        "sent_at": max(order["sent_at"], payment["sent_at"]),
        "decided_at": time.time(),
    }
    out = [Event(value=decision, key=order_id)]
    if points >= THRESHOLD:
        out.append(Event(value=decision, key=order_id, topic="shop.alerts"))
    return out
