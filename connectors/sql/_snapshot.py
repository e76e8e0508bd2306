"""``snapshot_diff`` mode: compare the whole table with the previous snapshot.

For tables with no change column. Every ``poll_interval`` the source reads the
table, hashes each row (JSON, BLAKE2b) by key, compares with the previous
snapshot and emits ``c`` (new key), ``u`` (hash changed) and ``d`` (key gone;
``before`` holds only the key columns, since only hashes are kept).

State: snapshot generation ``N`` is the file ``snapshot-N.json`` in the
connector's ``state_dir`` (``{key JSON: hash}``), written with fsync before any
event of that generation is returned. The position is ``{"gen": N}``; records of
a diff carry no position (``None``: one change spanning several records, as the
contract says) except the last one, which carries the new generation, so a crash
in the middle of a diff redoes the whole diff (at-least-once). ``ack`` deletes older
generations. A missing file for the saved generation (state folder lost) means a
fresh full snapshot (all rows as ``r``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from backbone.sdk import SourceRecord

from ._capture import ModeBase, Poll
from ._database import errors
from ._values import row_hash

__all__ = ["SnapshotDiff"]


@dataclass(frozen=True)
class DiffState:
    gen: int
    hashes: dict[str, str] | None  # None = no previous snapshot
    pending: tuple[SourceRecord, ...] = ()
    due: float = 0.0


class SnapshotDiff(ModeBase):
    """``snapshot_diff``: periodic full reads diffed by row hash."""

    @staticmethod
    def _file(gen: int) -> str:
        return f"snapshot-{gen}.json"

    def start(self, position: Any | None) -> DiffState:
        capture = self.capture
        if position is not None:
            gen = int(position["gen"])
            return DiffState(gen, capture.read_state(self._file(gen)))
        baseline = capture.read_state(self._file(0))
        if baseline is None and capture.options.initial == "latest":
            baseline, _ = self._read()
            capture.write_state(self._file(0), baseline)
        return DiffState(0, baseline)

    def _read(self) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
        capture = self.capture
        hashes: dict[str, str] = {}
        rows: dict[str, dict[str, Any]] = {}
        query = capture.select().order_by(*capture.key_columns())
        with errors(capture.engine, "reading the table snapshot"), capture.engine.connect() as conn:
            for mapping in (
                conn.execution_options(yield_per=capture.options.batch_size)
                .execute(query)
                .mappings()
            ):
                row = capture.row(mapping)
                key = json.dumps(capture.key_of(row), sort_keys=True, separators=(",", ":"))
                hashes[key] = row_hash(row)
                rows[key] = row
        return hashes, rows

    def poll(self, state: DiffState, now: float, mono: float) -> Poll:
        capture = self.capture
        size = capture.options.batch_size
        if state.pending:
            batch, rest = state.pending[:size], state.pending[size:]
            return Poll(
                list(batch), DiffState(state.gen, state.hashes, rest, state.due), bool(rest)
            )
        if mono < state.due:
            return Poll([], state)
        hashes, rows = self._read()
        previous_hashes = state.hashes
        gen = state.gen + 1
        old = {"gen": state.gen}  # names the changes of this diff (for their ce_id)
        new = {"gen": gen}
        changes: list[SourceRecord] = []
        if previous_hashes is None:
            for row in rows.values():
                changes.extend(capture.records("r", None, row, None, identity=old))
        else:
            for key, digest in hashes.items():
                before = previous_hashes.get(key)
                if before is None:
                    changes.extend(capture.records("c", None, rows[key], None, identity=old))
                elif before != digest:
                    changes.extend(capture.records("u", None, rows[key], None, identity=old))
            for key in sorted(previous_hashes.keys() - hashes.keys()):
                changes.extend(capture.records("d", json.loads(key), None, None, identity=old))
        due = mono + capture.options.poll_interval
        if not changes:
            return Poll([], DiffState(state.gen, hashes, (), due))
        capture.write_state(self._file(gen), hashes)
        for record in changes:
            if record.value is not None:
                record.value["source"]["position"] = new
        changes[-1].position = new
        first, later = changes[:size], changes[size:]
        return Poll(first, DiffState(gen, hashes, tuple(later), due), bool(later))

    def acked(self, position: Any) -> None:
        """Delete snapshot files older than the acknowledged generation."""
        gen = int(position["gen"])
        state = self.capture.state
        for name in state.names("snapshot-*.json"):
            try:
                number = int(name[len("snapshot-") : -len(".json")])
            except ValueError:
                continue
            if number < gen:
                state.delete(name)
