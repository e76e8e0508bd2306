"""Dev-time generator of the message codec (``_generated/``) from Kafka's JSON schemas.

Run by a developer, never at runtime::

    .venv/bin/python -m backbone.broker.protocol.generate [--compare DIR]

It reads the JSON message schemas that ship inside the installed kafka-python 3.x
wheel (``kafka/protocol/schemas/resources/*.json``; ``//`` comments stripped) and
writes one checked-in module per API (request + response) plus ``__init__.py``
into ``broker/protocol/_generated/``. ``--compare DIR`` additionally checks that
every schema present in DIR (e.g. ``/work/shared/kafka-protocol/message``) has
the same wire layout for every version both files support, and prints the
differences in version ranges.

The generated code is straight-line Python: per struct, one decode and one
encode function for the non-flexible versions and one pair for the flexible
versions, with version conditions folded where the range allows, runs of
fixed-width fields read/written with one precompiled ``struct.Struct``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import re
import sys
from pathlib import Path
from typing import Any

from ._codegen.model import MessageDef, build_message, intersect, module_name, parse_versions
from ._codegen.render import render_init, render_module

__all__ = ["OUT_DIR", "compare", "load_schema", "main", "schema_dir"]

OUT_DIR = Path(__file__).parent / "_generated"
_COMMENTS = re.compile(r"(?m)^\s*//.*\n?")

#: Kafka 3.9's lowest version of the APIs whose floor kafka-python's (Kafka 4) schemas
#: raised (KIP-896) and that old clients still send (Sarama before 1.40, Burrow 1.2,
#: librdkafka < 1.0): the codec reads and writes them too. The schemas kept the fields of
#: those versions (``"versions": "1"`` etc.); only ``validVersions`` moved, so lowering it
#: restores the layouts, which ``--compare`` checks against Kafka's own files.
KAFKA_3_9_FLOORS = {
    "CreateTopics": 0,
    "DeleteTopics": 0,
    "DescribeConfigs": 0,
    "ListOffsets": 0,
    "OffsetCommit": 0,
    "OffsetFetch": 0,
    "OffsetForLeaderEpoch": 0,
}


def schema_dir() -> Path:
    """The kafka-python wheel's bundled JSON schemas."""
    schemas = importlib.import_module("kafka.protocol.schemas")  # dev-time only
    return Path(str(schemas.__file__)).parent / "resources"


def load_schema(path: Path) -> dict[str, Any]:
    """A schema file with its comments stripped and, for the APIs of
    :data:`KAFKA_3_9_FLOORS`, ``validVersions`` lowered to Kafka 3.9's floor."""
    schema: dict[str, Any] = json.loads(_COMMENTS.sub("", path.read_text(encoding="utf-8")))
    api = re.sub(r"(Request|Response)$", "", str(schema.get("name", "")))
    floor = KAFKA_3_9_FLOORS.get(api)
    if floor is not None and schema.get("type") in ("request", "response"):
        valid = parse_versions(schema["validVersions"])
        if valid is not None and valid[0] > floor:
            schema["validVersions"] = f"{floor}-{valid[1]}"
    return schema


# ---------------------------------------------------------------- cross-check


def layout(
    fields: list[dict[str, Any]], common: dict[str, Any], version: int, flexible: bool
) -> list[Any]:
    """The wire layout of ``fields`` in ``version``, for comparing two schema files."""
    out: list[Any] = []
    for raw in fields:
        vr = parse_versions(raw["versions"])
        if vr is None or not vr[0] <= version <= vr[1]:
            continue
        tagged = parse_versions(raw.get("taggedVersions"))
        is_tagged = tagged is not None and tagged[0] <= version <= tagged[1]
        if is_tagged and not flexible:
            continue
        nr = parse_versions(raw.get("nullableVersions"))
        nullable = nr is not None and nr[0] <= version <= nr[1]
        t = raw["type"]
        elem = t[2:] if t.startswith("[]") else t
        sub = None
        if elem[:1].isupper():
            sub_fields = raw.get("fields") or common.get(elem, [])
            sub = layout(sub_fields, common, version, flexible)
            t = ("[]" if t.startswith("[]") else "") + "struct"
        out.append((raw["name"], t, nullable, raw.get("tag") if is_tagged else None, sub))
    return out


def compare(ours: Path, theirs: Path) -> list[str]:
    """Differences between the schemas in ``ours`` and the ones in ``theirs``."""
    report = []
    for path in sorted(ours.glob("*.json")):
        other = theirs / path.name
        if not other.exists():
            report.append(f"{path.name}: not in {theirs}")
            continue
        a, b = load_schema(path), load_schema(other)
        va, vb = parse_versions(a["validVersions"]), parse_versions(b["validVersions"])
        fa, fb = parse_versions(a["flexibleVersions"]), parse_versions(b["flexibleVersions"])
        if va != vb:
            report.append(f"{path.name}: validVersions {va} here, {vb} there")
        both = intersect(va, vb)
        if both is None:
            continue
        ca = {s["name"]: s["fields"] for s in a.get("commonStructs", [])}
        cb = {s["name"]: s["fields"] for s in b.get("commonStructs", [])}
        for v in range(both[0], both[1] + 1):
            flex_a = fa is not None and fa[0] <= v <= fa[1]
            flex_b = fb is not None and fb[0] <= v <= fb[1]
            if flex_a != flex_b or layout(a["fields"], ca, v, flex_a) != layout(
                b["fields"], cb, v, flex_b
            ):
                report.append(f"{path.name}: wire layout of version {v} DIFFERS")
    return report


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m backbone.broker.protocol.generate``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--compare", type=Path, help="schema folder to cross-check against")
    args = parser.parse_args(argv)
    src = schema_dir()
    kp_version = importlib.metadata.version("kafka-python")
    groups: dict[str, list[MessageDef]] = {}
    for path in sorted(src.glob("*.json")):
        schema = load_schema(path)
        if schema["type"] == "header":
            continue  # hand-written in _header.py
        msg = build_message(schema)
        groups.setdefault(module_name(msg.name), []).append(msg)
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.py"):
        old.unlink()
    for mod, msgs in groups.items():
        msgs.sort(key=lambda m: (m.kind != "request", m.name))
        (args.out / f"{mod}.py").write_text(render_module(msgs, kp_version), encoding="utf-8")
    (args.out / "__init__.py").write_text(render_init(groups, kp_version), encoding="utf-8")
    n = sum(len(ms) for ms in groups.values())
    sys.stdout.write(f"generated {n} messages in {len(groups)} modules under {args.out}\n")
    if args.compare:
        diffs = compare(src, args.compare)
        sys.stdout.write("\n".join(diffs) + ("\n" if diffs else ""))
        sys.stdout.write(f"compared against {args.compare}: {len(diffs)} notes\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
