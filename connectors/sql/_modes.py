"""Query-based capture modes: ``incrementing``, ``timestamp``, ``timestamp+incrementing``, ``bulk``.

Positions (JSON, strictly-after semantics):

- incrementing: ``{"id": W, "seen": [[a, b], ...]}`` -- every id <= W is done, and so
  are the ids inside the ``seen`` ranges above W (see :class:`Incrementing`).
- timestamp: ``{"ts": T}`` -- every row with timestamp <= T is done.
- timestamp+incrementing: ``{"ts": T, "id": I}`` -- every row with (ts, id) <= (T, I).
- bulk: ``{"run": N, "after": [key...] | offset}`` mid-run, ``{"run": N, "done": true}``.

Timestamp cursors keep the raw database value (``{"datetime": ...}`` on PostgreSQL,
the stored text on SQLite) so comparisons use the database's own ordering.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from backbone.sdk import SourceRecord

from ._capture import ModeBase, Poll, dump_key, load_key, ms_of, raw
from ._database import errors
from ._values import dump_cursor, load_cursor

__all__ = ["Bulk", "Incrementing", "Timestamp"]

Ranges = tuple[tuple[int, int], ...]


def add_id(ranges: Ranges, value: int) -> Ranges:
    """``ranges`` (sorted, disjoint, inclusive) with ``value`` added, merged."""
    if ranges:  # the usual case, ids in order: extend the last range
        low, high = ranges[-1]
        if value == high + 1:
            return (*ranges[:-1], (low, value))
        if low <= value <= high:
            return ranges
    merged: list[list[int]] = [list(r) for r in ranges]
    merged.append([value, value])
    merged.sort()
    out: list[list[int]] = []
    for low, high in merged:
        if out and low <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], high)
        else:
            out.append([low, high])
    return tuple((a, b) for a, b in out)


@dataclass(frozen=True)
class IncState:
    watermark: int | None
    seen: Ranges
    history: tuple[tuple[float, int], ...] = ()
    until: int | None = None  # initial snapshot: ids <= until were there at the first start

    def position(self) -> dict[str, Any]:
        """The canonical position (see :func:`inc_position`)."""
        return inc_position(self.watermark, self.seen, self.until)


def inc_position(watermark: int | None, seen: Ranges, until: int | None) -> dict[str, Any]:
    """The canonical incrementing position: a seen range right above the watermark joins
    it; the snapshot bound stays until the watermark passed it."""
    if watermark is not None and seen and seen[0][0] == watermark + 1:
        watermark = seen[0][1]
        seen = seen[1:]
    position: dict[str, Any] = {"id": watermark, "seen": [[a, b] for a, b in seen]}
    if until is not None and (watermark is None or watermark < until):
        position["snapshot_until"] = until
    return position


class Incrementing(ModeBase):
    """``incrementing``: new rows by a strictly increasing integer column.

    Ops: with ``initial: snapshot`` the rows there at the very first start (ids up to
    the highest id then, kept as ``snapshot_until`` in the position while the
    watermark is below it, so a restart mid-snapshot still says ``r``) are ``op: r``;
    every later row is ``op: c``.

    Late commits: an id is taken when a transaction inserts, but the row becomes
    visible only at commit, so a higher id can be seen before a lower one. The
    position therefore has a *watermark* W and the ``seen`` ids above it. Each poll
    reads every id > W not yet seen. W only advances to the highest id that was
    already visible ``lag`` seconds ago: a transaction still in flight then, and
    committing within ``lag``, is read on a later poll. ``lag: 0`` is the classic
    ``id > last`` cursor.
    """

    def start(self, position: Any | None) -> IncState:
        if position is not None:
            seen = tuple((int(a), int(b)) for a, b in position.get("seen", []))
            until = position.get("snapshot_until")
            return IncState(position.get("id"), seen, (), None if until is None else int(until))
        snapshot = self.capture.options.initial == "snapshot"

        def compute() -> dict[str, Any]:
            column = self.capture.relation.c[self.capture.options.incrementing_column or ""]
            with (
                errors(self.capture.engine, "reading the latest id"),
                self.capture.engine.connect() as conn,
            ):
                latest = conn.execute(sa.select(sa.func.max(column))).scalar()
            if not snapshot:
                return {"id": latest, "seen": []}
            if latest is None:
                return {"id": None, "seen": []}
            return {"id": None, "seen": [], "snapshot_until": int(latest)}

        return self.start(self.first_position(compute))

    def poll(self, state: IncState, now: float, mono: float) -> Poll:
        capture = self.capture
        name = capture.options.incrementing_column or ""
        column = capture.relation.c[name]
        query = capture.select(raw(column, "_bb_id"))
        if state.watermark is not None:
            query = query.where(column > state.watermark)
        for low, high in state.seen:
            query = query.where(sa.not_(column.between(low, high)))
        query = query.order_by(column).limit(capture.options.batch_size)
        with errors(capture.engine, "polling for new rows"), capture.engine.connect() as conn:
            rows = conn.execute(query).all()  # tuples: the data columns, then _bb_id
        now_ms = int(time.time() * 1000)
        seen = state.seen
        until = state.until
        watermark = state.watermark
        ids = [int(row[-1]) for row in rows]
        positions: list[dict[str, Any]] = []
        for row_id in ids:
            if len(seen) == 1 and row_id == seen[0][1] + 1:  # ids in order: inc_position, inline
                low = seen[0][0]
                seen = ((low, row_id),)
                if watermark is not None and low == watermark + 1:
                    top: int | None = row_id
                    position: dict[str, Any] = {"id": row_id, "seen": []}
                else:
                    top = watermark
                    position = {"id": watermark, "seen": [[low, row_id]]}
                if until is not None and (top is None or top < until):
                    position["snapshot_until"] = until
            else:
                seen = add_id(seen, row_id)
                position = inc_position(watermark, seen, until)
            positions.append(position)
        ops = ["c"] * len(ids) if until is None else ["r" if i <= until else "c" for i in ids]
        afters = capture.rows(rows)
        keys = capture.key_texts(afters)
        if keys is not None:  # the usual case: int or str keys, identities as their JSON
            changes = [f'{{"id":{row_id}}}' for row_id in ids]
            records = capture.row_records(ops, afters, positions, keys, changes, now_ms)
        else:
            records = []
            for op, after, position, row_id in zip(ops, afters, positions, ids, strict=True):
                records.extend(
                    capture.records(
                        op, None, after, position, identity={"id": row_id}, now_ms=now_ms
                    )
                )
        top = max([state.watermark or 0] + [high for _, high in seen]) if seen else state.watermark
        history = (*state.history, (mono, top)) if top is not None else state.history
        watermark = state.watermark
        keep: list[tuple[float, int]] = []
        for seen_at, highest in history:
            if seen_at <= mono - capture.options.lag:
                watermark = highest if watermark is None else max(watermark, highest)
            else:
                keep.append((seen_at, highest))
        if watermark is not None:
            seen = tuple((max(a, watermark + 1), b) for a, b in seen if b > watermark)
        next_state = IncState(watermark, seen, tuple(keep), until)
        if "snapshot_until" not in next_state.position():
            next_state = IncState(watermark, seen, tuple(keep))  # the snapshot is done
        # one record per row, named by its id: distinct ids, distinct identities
        unique = len(set(ids)) == len(ids)
        return Poll(records, next_state, len(rows) == capture.options.batch_size, unique)


def cursor_below(ts: Any, row_id: Any, until: tuple[Any, Any], *, strict: bool) -> bool:
    """Whether ``(ts, row_id)`` is below (``strict``) or at most ``until`` -- the ids only
    break ties when both are known. Values Python cannot order (a column holding mixed
    types on SQLite) count as past the bound."""
    bound_ts, bound_id = until
    try:
        if ts != bound_ts:
            return bool(ts < bound_ts)
        if row_id is None or bound_id is None:
            return not strict
        return bool(row_id < bound_id) or (not strict and row_id == bound_id)
    except TypeError:
        return False


@dataclass(frozen=True)
class TsState:
    ts: Any
    id: Any = None
    until: tuple[Any, Any] | None = None  # initial snapshot: (ts, id) of the last row there

    def snapshot(self, with_id: bool) -> bool:
        """Whether rows there at the first start may still come (the cursor is below)."""
        if self.until is None:
            return False
        if self.ts is None:
            return True
        return cursor_below(self.ts, self.id if with_id else None, self.until, strict=True)

    def position(self, with_id: bool) -> dict[str, Any]:
        position: dict[str, Any] = {"ts": dump_cursor(self.ts)}
        if with_id:
            position["id"] = self.id
        if self.until is not None and self.snapshot(with_id):
            until: dict[str, Any] = {"ts": dump_cursor(self.until[0])}
            if with_id:
                until["id"] = self.until[1]
            position["snapshot_until"] = until
        return position


class Timestamp(ModeBase):
    """``timestamp`` and ``timestamp+incrementing``: rows changed since the cursor.

    Ops: with ``initial: snapshot`` the rows there at the very first start -- those up
    to the highest ``(ts[, id])`` then, kept as ``snapshot_until`` in the position
    while the cursor is below it -- are ``op: r``; every later change is ``op: u``
    (polling cannot tell an insert from an update).

    Only rows whose timestamp is at least ``lag`` old are read, so a transaction
    that commits within ``lag`` of writing its timestamp is not skipped. With an
    incrementing column the cursor is the pair ``(ts, id)`` (keyset paging), so rows
    sharing a timestamp are never lost across pages. Without one, a page never ends
    inside a group of rows sharing a timestamp: the whole group is read, and the
    position only moves past a timestamp once all its rows are emitted.
    """

    def __init__(self, capture: Any) -> None:
        super().__init__(capture)
        self.with_id = capture.options.mode == "timestamp+incrementing"

    def _columns(self) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[Any] | None]:
        options = self.capture.options
        ts = self.capture.relation.c[options.timestamp_column or ""]
        inc = self.capture.relation.c[options.incrementing_column or ""] if self.with_id else None
        return ts, inc

    def start(self, position: Any | None) -> TsState:
        if position is not None:
            until = position.get("snapshot_until")
            return TsState(
                load_cursor(position.get("ts")),
                position.get("id"),
                None if until is None else (load_cursor(until.get("ts")), until.get("id")),
            )
        snapshot = self.capture.options.initial == "snapshot"

        def compute() -> dict[str, Any]:
            ts, inc = self._columns()
            raw_ts = raw(ts, "_bb_ts")
            # latest: start after the rows older than lag; snapshot: the rows there now
            # (a timestamp in the future is a later change, not part of the snapshot)
            now = time.time() + (self.capture.options.lag if snapshot else 0.0)
            query = (
                sa.select(raw_ts)
                .where(ts.is_not(None), raw_ts <= self.capture.upper_bound(now))
                .order_by(ts.desc())
            )
            if inc is not None:
                query = query.add_columns(inc).order_by(inc.desc())
            with (
                errors(self.capture.engine, "reading the latest timestamp"),
                self.capture.engine.connect() as conn,
            ):
                row = conn.execute(query.limit(1)).first()
            last = (
                {"ts": None, "id": None}
                if row is None
                else {
                    "ts": dump_cursor(row[0]),
                    "id": row[1] if inc is not None else None,
                }
            )
            if not snapshot:
                return last
            if row is None:
                return {"ts": None, "id": None}
            return {"ts": None, "id": None, "snapshot_until": last}

        return self.start(self.first_position(compute))

    def poll(self, state: TsState, now: float, mono: float) -> Poll:
        capture = self.capture
        ts, inc = self._columns()
        raw_ts = sa.type_coerce(ts, sa.types.NullType())
        bound = capture.upper_bound(now)
        extra = [raw(ts, "_bb_ts")] + ([raw(inc, "_bb_id")] if inc is not None else [])
        base = capture.select(*extra).where(raw_ts <= bound)
        if state.ts is not None:
            if inc is not None and state.id is not None:
                base = base.where(
                    sa.or_(raw_ts > state.ts, sa.and_(raw_ts == state.ts, inc > state.id))
                )
            else:
                base = base.where(raw_ts > state.ts)
        order = [ts, inc] if inc is not None else [ts]
        limit = capture.options.batch_size
        with errors(capture.engine, "polling for changed rows"), capture.engine.connect() as conn:
            results = conn.execute(base.order_by(*order).limit(limit)).all()
            full = len(results) == limit
            if full and inc is None:
                # never stop inside a group sharing one timestamp: read the whole group
                boundary = results[-1]._mapping["_bb_ts"]
                results = conn.execute(base.where(raw_ts <= boundary).order_by(ts)).all()
        rows = [result._mapping for result in results]
        now_ms = int(time.time() * 1000)
        records: list[SourceRecord] = []
        current = state
        until = state.until
        for index, (mapping, after) in enumerate(zip(rows, capture.rows(results), strict=True)):
            following = rows[index + 1] if index + 1 < len(rows) else None
            if inc is not None:
                current = TsState(mapping["_bb_ts"], mapping["_bb_id"], until)
            elif following is None or following["_bb_ts"] != mapping["_bb_ts"]:
                current = TsState(mapping["_bb_ts"], None, until)
            change_ms = ms_of(mapping[capture.options.timestamp_column or ""], capture.zone)
            records.extend(
                capture.records(
                    "r" if self._in_snapshot(mapping, until) else "u",
                    None,
                    after,
                    current.position(self.with_id),
                    change_ms,
                    identity={
                        "ts": dump_cursor(mapping["_bb_ts"]),
                        "id": mapping["_bb_id"] if inc is not None else None,
                    },
                    now_ms=now_ms,
                )
            )
        if until is not None and not current.snapshot(self.with_id):
            current = TsState(current.ts, current.id)  # the snapshot is done
        return Poll(records, current, full)

    def _in_snapshot(self, mapping: Any, until: tuple[Any, Any] | None) -> bool:
        """Whether the row read was there at the first start (``initial: snapshot``)."""
        if until is None:
            return False
        row_id = mapping["_bb_id"] if self.with_id else None
        return cursor_below(mapping["_bb_ts"], row_id, until, strict=False)


@dataclass(frozen=True)
class BulkState:
    run: int
    after: Any  # key tuple, row offset, or None at the start of a run
    done: bool
    due: float = 0.0

    def position(self) -> dict[str, Any]:
        if self.done:
            return {"run": self.run, "done": True}
        after = dump_key(self.after) if isinstance(self.after, tuple) else self.after
        return {"run": self.run, "after": after}


class Bulk(ModeBase):
    """``bulk``: the whole table (or query) every ``poll_interval``, each row as op ``r``.

    A run is paged by the key (keyset) or, without a key, by row offset; the
    position says how far the current run got, so a restart finishes it first.
    """

    def start(self, position: Any | None) -> BulkState:
        if position is None:
            if self.capture.options.initial == "latest":
                return BulkState(
                    0, None, True, time.monotonic() + self.capture.options.poll_interval
                )
            return BulkState(1, None, False)
        if position.get("done"):
            return BulkState(
                int(position["run"]),
                None,
                True,
                time.monotonic() + self.capture.options.poll_interval,
            )
        after = position.get("after")
        after = load_key(after) if isinstance(after, list) else after
        return BulkState(int(position["run"]), after, False)

    def poll(self, state: BulkState, now: float, mono: float) -> Poll:
        capture = self.capture
        if state.done:
            if mono < state.due:
                return Poll([], state)
            state = BulkState(state.run + 1, None, False)
        keys = capture.key_columns()
        limit = capture.options.batch_size
        extra = [raw(column, f"_bb_k{i}") for i, column in enumerate(keys)]
        query = capture.select(*extra)
        if keys:
            if state.after is not None:
                query = query.where(
                    sa.tuple_(*[sa.type_coerce(c, sa.types.NullType()) for c in keys])
                    > sa.tuple_(*[sa.literal(v, sa.types.NullType()) for v in state.after])
                )
            query = query.order_by(*keys)
        elif state.after:
            query = query.offset(int(state.after))
        with errors(capture.engine, "reading the table"), capture.engine.connect() as conn:
            results = conn.execute(query.limit(limit)).all()
        rows = [result._mapping for result in results]
        done = len(rows) < limit
        now_ms = int(time.time() * 1000)
        records: list[SourceRecord] = []
        current = state
        for index, (mapping, after) in enumerate(zip(rows, capture.rows(results), strict=True)):
            if done and index == len(rows) - 1:
                current = BulkState(state.run, None, True, mono + capture.options.poll_interval)
            elif keys:
                current = BulkState(
                    state.run, tuple(mapping[f"_bb_k{i}"] for i in range(len(keys))), False
                )
            else:
                current = BulkState(state.run, (state.after or 0) + index + 1, False)
            records.extend(capture.records("r", None, after, current.position(), now_ms=now_ms))
        if done and not rows:
            current = BulkState(state.run, None, True, mono + capture.options.poll_interval)
        return Poll(records, current, not done)
