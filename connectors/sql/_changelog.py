"""``changelog`` mode: triggers record which rows changed; the source reads that log.

Layout (created by ``install_triggers: true`` on SQLite and PostgreSQL)::

    backbone_changelog_<table>(bb_seq     autoincrement primary key,
                               bb_op      'c' | 'u' | 'd',
                               bb_txid    writing transaction id (PostgreSQL only),
                               bb_changed_at  time of the change,
                               <key columns of the table>)

plus AFTER INSERT / UPDATE / DELETE row triggers that append one row per change
(an update that changes the key appends a ``d`` for the old key and a ``u`` for
the new one). The log names *which* rows changed; each event carries the row as it
is when read (joined from the table), or ``op: d`` when the row is gone. A burst of
changes to one row may therefore arrive as its latest state, possibly more than
once, and the last event for a row always matches the table.

Reading order and late commits: on SQLite writers are serialized, so ``bb_seq``
order is commit order and the position is ``{"seq": S}``. On PostgreSQL a long
transaction can take a low ``bb_seq`` and commit after higher ones, so the source
reads in *windows of finished transactions*: the horizon ``H`` is
``pg_snapshot_xmin(pg_current_snapshot())`` (every transaction with an id below it
has finished); a window reads the log rows with ``lo <= bb_txid < H`` by ``bb_seq``.
The position is ``{"lo": lo, "hi": H, "seq": S}``. A transaction left open holds
later changes back until it ends (none are lost).

Pruning: once a position is acknowledged (saved by the runtime), the log rows it
covers are deleted in :meth:`Changelog.acked`, at most once per
:data:`PRUNE_INTERVAL` seconds and :data:`PRUNE_BATCH` rows per transaction: on
SQLite the rows with ``bb_seq < S`` (the row ``S`` itself stays, so the next
``bb_seq`` stays above ``S`` even for a log table created without AUTOINCREMENT);
on PostgreSQL the rows of transactions below the window (``bb_txid < lo``) and the
rows of the window already read (``bb_txid < hi AND bb_seq <= S``). The log
therefore belongs to one source: two sources capturing the same table would delete
changes the other has not read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from backbone.sdk import FatalError, RetriableError, SourceRecord

from ._capture import Capture, ModeBase, Poll, dump_key, load_key, ms_of, raw
from ._database import errors, split_name
from ._values import to_json

logger = logging.getLogger(__name__)

_UTC = ZoneInfo("UTC")  # SQLite's changelog stores strftime('now') in UTC; PostgreSQL TIMESTAMPTZ

__all__ = ["PRUNE_INTERVAL", "Changelog", "changelog_name", "install"]

PRUNE_INTERVAL = 10.0
"""Seconds between two deletions of acknowledged changelog rows (the first ack prunes)."""

PRUNE_BATCH = 5000
"""Most changelog rows deleted per transaction when pruning."""


def changelog_name(table: str) -> str:
    """The changelog table of ``table`` (same schema)."""
    schema, name = split_name(table)
    return f"{schema + '.' if schema else ''}backbone_changelog_{name}"


def install(engine: Engine, table: sa.Table, key: list[str]) -> None:
    """Create the changelog table and triggers if missing (idempotent)."""
    dialect = engine.dialect.name
    quote = engine.dialect.identifier_preparer.quote
    schema_prefix = f"{quote(table.schema)}." if table.schema else ""
    log_name = f"backbone_changelog_{table.name}"
    log = schema_prefix + quote(log_name)
    target = schema_prefix + quote(table.name)
    key_defs = ", ".join(
        f"{quote(k)} {table.c[k].type.compile(dialect=engine.dialect)}" for k in key
    )
    key_list = ", ".join(quote(k) for k in key)

    def values(prefix: str) -> str:
        return ", ".join(f"{prefix}.{quote(k)}" for k in key)

    key_changed = " OR ".join(f"OLD.{quote(k)} IS DISTINCT FROM NEW.{quote(k)}" for k in key)
    statements: list[str]
    if dialect == "sqlite":
        key_changed = " OR ".join(f"OLD.{quote(k)} IS NOT NEW.{quote(k)}" for k in key)
        statements = [
            f"CREATE TABLE IF NOT EXISTS {log} (bb_seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            f"bb_op TEXT NOT NULL, bb_changed_at TEXT NOT NULL DEFAULT "
            f"(strftime('%Y-%m-%d %H:%M:%f', 'now')), {key_defs})",
            f"CREATE TRIGGER IF NOT EXISTS {quote(log_name + '_insert')} AFTER INSERT ON "
            f"{quote(table.name)} BEGIN INSERT INTO {quote(log_name)} (bb_op, {key_list}) "
            f"VALUES ('c', {values('NEW')}); END",
            f"CREATE TRIGGER IF NOT EXISTS {quote(log_name + '_update')} AFTER UPDATE ON "
            f"{quote(table.name)} BEGIN INSERT INTO {quote(log_name)} (bb_op, {key_list}) "
            f"SELECT 'd', {values('OLD')} WHERE {key_changed}; "
            f"INSERT INTO {quote(log_name)} (bb_op, {key_list}) VALUES ('u', {values('NEW')}); END",
            f"CREATE TRIGGER IF NOT EXISTS {quote(log_name + '_delete')} AFTER DELETE ON "
            f"{quote(table.name)} BEGIN INSERT INTO {quote(log_name)} (bb_op, {key_list}) "
            f"VALUES ('d', {values('OLD')}); END",
        ]
    elif dialect == "postgresql":
        if _pg_installed(engine, target, log, log_name):
            return
        function = schema_prefix + quote(log_name + "_fn")
        statements = [
            f"CREATE TABLE IF NOT EXISTS {log} (bb_seq BIGSERIAL PRIMARY KEY, "
            f"bb_op CHAR(1) NOT NULL, "
            f"bb_txid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint), "
            f"bb_changed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), {key_defs})",
            f"CREATE INDEX IF NOT EXISTS {quote(log_name + '_txid')} ON {log} (bb_txid, bb_seq)",
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $bb$\n"
            f"BEGIN\n"
            f"  IF TG_OP = 'INSERT' THEN\n"
            f"    INSERT INTO {log} (bb_op, {key_list}) VALUES ('c', {values('NEW')});\n"
            f"  ELSIF TG_OP = 'UPDATE' THEN\n"
            f"    IF {key_changed} THEN\n"
            f"      INSERT INTO {log} (bb_op, {key_list}) VALUES ('d', {values('OLD')});\n"
            f"    END IF;\n"
            f"    INSERT INTO {log} (bb_op, {key_list}) VALUES ('u', {values('NEW')});\n"
            f"  ELSE\n"
            f"    INSERT INTO {log} (bb_op, {key_list}) VALUES ('d', {values('OLD')});\n"
            f"  END IF;\n"
            f"  RETURN NULL;\n"
            f"END $bb$",
            f"DROP TRIGGER IF EXISTS {quote(log_name + '_trigger')} ON {target}",
            f"CREATE TRIGGER {quote(log_name + '_trigger')} AFTER INSERT OR UPDATE OR DELETE "
            f"ON {target} FOR EACH ROW EXECUTE FUNCTION {function}()",
        ]
    else:
        raise FatalError(
            f"install_triggers supports SQLite and PostgreSQL, not {dialect!r}; create the "
            f"changelog table and triggers yourself (see the sql connector docs)"
        )
    with errors(engine, "installing the changelog triggers"), engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def _pg_installed(engine: Engine, target: str, log: str, log_name: str) -> bool:
    """Whether the changelog table and trigger already exist (skip DDL: no new xid).

    ``target`` and ``log`` are the quoted (schema-qualified) names used in the DDL, so
    ``to_regclass`` finds mixed-case tables too instead of folding them to lower case.
    """
    with errors(engine, "looking for the changelog triggers"), engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_trigger WHERE tgname = :trigger "
                "AND tgrelid = to_regclass(:target) AND to_regclass(:log) IS NOT NULL"
            ),
            {"trigger": log_name + "_trigger", "target": target, "log": log},
        ).scalar_one()
    return bool(found)


@dataclass(frozen=True)
class LogState:
    """Where the log reading is, plus an unfinished initial snapshot (if any)."""

    seq: int | None  # last bb_seq done (in the window on PostgreSQL)
    lo: int | None = None  # PostgreSQL window [lo, hi) of transaction ids
    hi: int | None = None
    snapshot_after: Any = None  # key tuple of the last snapshot row, () = not started
    snapshot: bool = False

    def position(self) -> dict[str, Any]:
        log: dict[str, Any] = {"seq": self.seq}
        if self.lo is not None:
            log.update(lo=self.lo, hi=self.hi)
        if self.snapshot:
            after = None if self.snapshot_after in (None, ()) else dump_key(self.snapshot_after)
            return {"snapshot_after": after, "then": log}
        return log


class Changelog(ModeBase):
    """``changelog``: reads the trigger-fed changelog table (sees deletes)."""

    def __init__(self, capture: Capture, log: sa.Table) -> None:
        super().__init__(capture)
        self.log = log
        self.postgres = capture.dialect == "postgresql"
        self._pruned_at: float | None = None  # monotonic time of the last pruning

    def _horizon(self, conn: Connection) -> int:
        return int(
            conn.exec_driver_sql(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
            ).scalar_one()
        )

    def _log_end(self) -> dict[str, Any]:
        with (
            errors(self.capture.engine, "reading the changelog end"),
            self.capture.engine.connect() as conn,
        ):
            if self.postgres:
                horizon = self._horizon(conn)
                return {"seq": None, "lo": horizon, "hi": horizon}
            seq = conn.execute(sa.select(sa.func.max(self.log.c.bb_seq))).scalar()
            return {"seq": seq}

    @staticmethod
    def _state(log: dict[str, Any], **snapshot: Any) -> LogState:
        return LogState(log.get("seq"), log.get("lo"), log.get("hi"), **snapshot)

    def start(self, position: Any | None) -> LogState:
        if position is None:
            if self.capture.options.initial == "latest":
                return self._state(self.first_position(self._log_end))
            return self._state(self._log_end(), snapshot_after=(), snapshot=True)
        if "then" in position:
            after = position.get("snapshot_after")
            return self._state(
                position["then"],
                snapshot_after=load_key(after) if after is not None else (),
                snapshot=True,
            )
        return self._state(position)

    def poll(self, state: LogState, now: float, mono: float) -> Poll:
        if state.snapshot:
            return self._snapshot_page(state)
        return self._log_page(state)

    def _snapshot_page(self, state: LogState) -> Poll:
        capture = self.capture
        keys = capture.key_columns()
        limit = capture.options.batch_size
        query = capture.select(*[raw(c, f"_bb_k{i}") for i, c in enumerate(keys)])
        if state.snapshot_after:
            coerced = [sa.type_coerce(c, sa.types.NullType()) for c in keys]
            literals = [sa.literal(v, sa.types.NullType()) for v in state.snapshot_after]
            query = query.where(sa.tuple_(*coerced) > sa.tuple_(*literals))
        with (
            errors(capture.engine, "reading the initial snapshot"),
            capture.engine.connect() as conn,
        ):
            rows = conn.execute(query.order_by(*keys).limit(limit)).mappings().all()
        done = len(rows) < limit
        records: list[SourceRecord] = []
        current = state
        for index, mapping in enumerate(rows):
            if done and index == len(rows) - 1:
                current = LogState(state.seq, state.lo, state.hi)
            else:
                after = tuple(mapping[f"_bb_k{i}"] for i in range(len(keys)))
                current = LogState(state.seq, state.lo, state.hi, after, True)
            # named by the row (the key and content are part of every identity), not by
            # the position: on PostgreSQL that holds the txid horizon taken at start, so a
            # snapshot read again after a crash would get other ce_ids
            records.extend(
                capture.records(
                    "r", None, capture.row(mapping), current.position(), identity="snapshot"
                )
            )
        if done:
            current = LogState(state.seq, state.lo, state.hi)
        return Poll(records, current, True)

    def _log_page(self, state: LogState) -> Poll:
        capture = self.capture
        table = capture.relation
        log = self.log
        limit = capture.options.batch_size
        join = log.outerjoin(table, sa.and_(*[log.c[k] == table.c[k] for k in capture.key]))
        query = sa.select(
            log.c.bb_seq,
            log.c.bb_op,
            log.c.bb_changed_at,
            *[log.c[k].label(f"_bb_k{i}") for i, k in enumerate(capture.key)],
            *table.c,
            table.c[capture.key[0]].label("_bb_present"),
        ).select_from(join)
        with errors(capture.engine, "reading the changelog"), capture.engine.connect() as conn:
            lo, hi = state.lo, state.hi
            if self.postgres:
                if state.seq is None and lo == hi:
                    hi = self._horizon(conn)
                query = query.where(log.c.bb_txid >= lo, log.c.bb_txid < hi)
            if state.seq is not None:
                query = query.where(log.c.bb_seq > state.seq)
            rows = conn.execute(query.order_by(log.c.bb_seq).limit(limit)).mappings().all()
        full = len(rows) == limit
        records: list[SourceRecord] = []
        current = LogState(state.seq, lo, hi)
        for index, mapping in enumerate(rows):
            if self.postgres and not full and index == len(rows) - 1:
                current = LogState(None, hi, hi)  # window finished
            else:
                current = LogState(int(mapping["bb_seq"]), lo, hi)
            change_ms = ms_of(mapping["bb_changed_at"], _UTC)  # the log writes UTC
            identity = {"seq": int(mapping["bb_seq"])}  # positions depend on the windows
            if mapping["_bb_present"] is None:
                before = {
                    k: to_json(mapping[f"_bb_k{i}"], capture.zone)
                    for i, k in enumerate(capture.key)
                }
                records.extend(
                    capture.records(
                        "d",
                        before,
                        None,
                        current.position(),
                        change_ms,
                        identity,
                    )
                )
            else:
                op = mapping["bb_op"].strip()
                op = "u" if op == "d" else op
                records.extend(
                    capture.records(
                        op,
                        None,
                        capture.row(mapping),
                        current.position(),
                        change_ms,
                        identity,
                    )
                )
        if self.postgres and not rows:
            current = LogState(None, hi, hi)
        return Poll(records, current, full)

    def acked(self, position: Any) -> None:
        """Delete the log rows ``position`` covers (see the module docstring).

        Runs in a worker thread; at most once per :data:`PRUNE_INTERVAL`. A failure
        (e.g. a locked SQLite file) is logged and the rows are deleted on a later ack.
        """
        mono = time.monotonic()
        if self._pruned_at is not None and mono - self._pruned_at < PRUNE_INTERVAL:
            return
        condition = self.prunable(position)
        if condition is None:
            return
        self._pruned_at = mono
        capture = self.capture
        seq = self.log.c.bb_seq
        chunk = sa.select(seq).where(condition).order_by(seq).limit(PRUNE_BATCH).scalar_subquery()
        statement = self.log.delete().where(seq.in_(chunk))
        deleted = 0
        try:
            while True:  # short transactions, so writers of the table wait little
                with (
                    errors(capture.engine, "pruning the changelog"),
                    capture.engine.begin() as conn,
                ):
                    count = conn.execute(statement).rowcount
                deleted += count
                if count < PRUNE_BATCH:
                    break
        except (RetriableError, FatalError) as exc:
            logger.warning("sql source %s: changelog not pruned: %s", capture.connector, exc)
        logger.debug(
            "sql source %s: pruned %s changelog rows up to %s", capture.connector, deleted, position
        )

    def prunable(self, position: Any) -> sa.ColumnElement[bool] | None:
        """Which log rows ``position`` says were read (None: none provably)."""
        log = position.get("then", position) if isinstance(position, dict) else None
        if not isinstance(log, dict):
            return None
        seq = log.get("seq")
        if not self.postgres:
            return None if seq is None else self.log.c.bb_seq < int(seq)
        lo, hi = log.get("lo"), log.get("hi")
        if lo is None or hi is None:
            return None
        below = self.log.c.bb_txid < int(lo)
        if seq is None:
            return below
        return sa.or_(below, sa.and_(self.log.c.bb_txid < int(hi), self.log.c.bb_seq <= int(seq)))
