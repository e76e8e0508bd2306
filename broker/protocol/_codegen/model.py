"""The generator's model of a message schema: versions, fields, structs."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any

OPEN = 0x7FFF
NULL_C = "b'\\x00'"  # source of the compact null marker
FIXED = {
    "bool": ("?", 1),
    "int8": ("b", 1),
    "int16": ("h", 2),
    "uint16": ("H", 2),
    "int32": ("i", 4),
    "uint32": ("I", 4),
    "int64": ("q", 8),
    "float64": ("d", 8),
}
PY_TYPES = {
    "bool": "bool",
    "int8": "int",
    "int16": "int",
    "uint16": "int",
    "int32": "int",
    "uint32": "int",
    "int64": "int",
    "float64": "float",
    "string": "str",
    "bytes": "bytes",
    "records": "Records",
    "uuid": "uuid.UUID",
}
RESERVED = {"api_key", "min_version", "max_version", "flexible_from", "decode", "encode"}

Range = tuple[int, int] | None


def parse_versions(text: str | None) -> Range:
    if text is None or text == "none":
        return None
    if text.endswith("+"):
        return int(text[:-1]), OPEN
    if "-" in text:
        lo, hi = text.split("-")
        return int(lo), int(hi)
    return int(text), int(text)


def intersect(a: Range, b: Range) -> Range:
    if a is None or b is None:
        return None
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo <= hi else None


def overlap(a: Range, b: tuple[int, int]) -> tuple[int, int]:
    """``intersect`` where the caller knows the ranges overlap."""
    both = intersect(a, b)
    assert both is not None, (a, b)
    return both


def snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()
    return s + "_" if keyword.iskeyword(s) else s


# ---------------------------------------------------------------- model


@dataclass
class Field:
    json_name: str
    attr: str
    type: str  # JSON type
    versions: Range
    nullable: Range
    tag: int | None
    tagged: Range
    default: str | None
    struct: StructDef | None = None

    @property
    def is_array(self) -> bool:
        return self.type.startswith("[]")

    @property
    def elem(self) -> str:
        return self.type[2:] if self.is_array else self.type

    @property
    def spec_type(self) -> str:
        base = "struct" if self.struct is not None else self.elem
        return ("[]" if self.is_array else "") + base


@dataclass
class StructDef:
    name: str  # JSON struct name (or message name at top level)
    pyname: str  # module-level class name
    qualname: str
    fields: list[Field] = field(default_factory=list)
    children: list[StructDef] = field(default_factory=list)
    has_records: bool = False


@dataclass
class MessageDef:
    name: str
    kind: str  # request | response | data
    api_key: int | None
    valid: tuple[int, int]
    flexible: Range
    root: StructDef


def build_message(schema: dict[str, Any]) -> MessageDef:
    name = schema["name"]
    common = {s["name"]: s["fields"] for s in schema.get("commonStructs", [])}
    seen: dict[str, StructDef] = {}
    root = StructDef(name, name, name)

    def build(sd: StructDef, fields: list[dict[str, Any]]) -> None:
        for raw in fields:
            attr = snake(raw["name"])
            if sd is root and attr in RESERVED:
                raise SystemExit(f"{name}.{raw['name']} collides with a ClassVar")
            f = Field(
                json_name=raw["name"],
                attr=attr,
                type=raw["type"],
                versions=parse_versions(raw["versions"]),
                nullable=parse_versions(raw.get("nullableVersions")),
                tag=raw.get("tag"),
                tagged=parse_versions(raw.get("taggedVersions")),
                default=None if raw.get("default") is None else str(raw["default"]),
            )
            elem = f.elem
            if elem[:1].isupper():
                sub_fields = raw.get("fields") or common.get(elem)
                if elem in seen:
                    f.struct = seen[elem]
                else:
                    if sub_fields is None:
                        raise SystemExit(f"{name}: struct {elem} has no fields")
                    child = StructDef(elem, f"{name}_{elem}", f"{sd.qualname}.{elem}")
                    seen[elem] = child
                    build(child, sub_fields)
                    sd.children.append(child)
                    f.struct = child
                if f.struct.has_records:
                    sd.has_records = True
            elif elem == "records":
                sd.has_records = True
            elif elem not in FIXED and elem not in PY_TYPES:
                raise SystemExit(f"{name}.{raw['name']}: unknown type {f.type}")
            sd.fields.append(f)

    build(root, schema["fields"])
    valid = parse_versions(schema["validVersions"])
    assert valid is not None
    return MessageDef(
        name=name,
        kind=schema["type"],
        api_key=schema.get("apiKey"),
        valid=valid,
        flexible=parse_versions(schema["flexibleVersions"]),
        root=root,
    )


def all_structs(sd: StructDef) -> list[StructDef]:
    """Post-order: children before parents."""
    out: list[StructDef] = []
    for c in sd.children:
        out.extend(all_structs(c))
    out.append(sd)
    return out


def module_name(msg_name: str) -> str:
    base = re.sub(r"(Request|Response)$", "", msg_name)
    return snake(base)
