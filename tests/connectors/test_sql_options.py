"""Option errors of the sql connector, as ``backbone validate`` reports them (file:line:col)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from backbone import ConfigError
from backbone.config import load_config
from tests.connectors.test_sql_pipeline import registry


def problems(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "c.yaml").write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml", registry())
    prefix = f"{tmp_path / 'c.yaml'}:"
    assert all(p.startswith(prefix) for p in info.value.problems), info.value.problems
    return [p[len(prefix) :] for p in info.value.problems]


def test_mode_and_relation_errors_name_the_option_and_the_place(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """\
        sources:
          log:
            type: sql
            topic: t
            url: sqlite:///shop.db
            query: SELECT id FROM orders
            mode: changelog
          diff:
            type: sql
            topic: t
            url: sqlite:///shop.db
            query: SELECT id FROM orders
            mode: snapshot_diff
          ts: {type: sql, topic: t, url: "sqlite:///shop.db", table: orders, mode: timestamp}
          tsinc:
            type: sql
            topic: t
            url: sqlite:///shop.db
            table: orders
            mode: timestamp+incrementing
            incrementing_column: id
          inc: {type: sql, topic: t, url: "sqlite:///shop.db", table: orders, mode: incrementing}
        """,
    ) == [
        "2:3: sources.log: mode 'changelog' captures a table: use 'table', not 'query'",
        "8:3: sources.diff: mode 'snapshot_diff' with 'query' needs 'key'",
        "14:3: sources.ts: mode 'timestamp' needs 'timestamp_column'",
        "15:3: sources.tsinc: mode 'timestamp+incrementing' needs 'timestamp_column'",
        "22:3: sources.inc: mode 'incrementing' needs 'incrementing_column'",
    ]


def test_table_and_query_and_trigger_and_zone_errors(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        sources:
          both: {type: sql, topic: t, url: "sqlite:///a.db", table: a, query: SELECT 1, mode: bulk}
          none: {type: sql, topic: t, url: "sqlite:///a.db", mode: bulk}
          trig: {type: sql, topic: t, url: "sqlite:///a.db", table: a, mode: bulk,
                 install_triggers: true}
          zone: {type: sql, topic: t, url: "sqlite:///a.db", table: a, mode: bulk,
                 timezone: Mars/Olympus}
        """,
    )
    assert found == [
        "2:3: sources.both: give exactly one of 'table' and 'query'",
        "3:3: sources.none: give exactly one of 'table' and 'query'",
        "4:3: sources.trig: 'install_triggers' only applies to mode 'changelog'",
        "7:20: sources.zone.timezone: unknown time zone 'Mars/Olympus' "
        "(use an IANA name like 'UTC')",
    ]


def test_a_valid_query_source_loads(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "sources:\n"
        "  q: {type: sql, topic: t, url: 'sqlite:///a.db', query: 'SELECT id FROM a', "
        "mode: snapshot_diff, key: id}\n"
    )
    config = load_config(tmp_path / "c.yaml", registry())
    assert config.sources["q"].type == "sql"
