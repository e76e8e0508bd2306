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
import importlib.metadata
import json
import keyword
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

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
    "records": "object",
    "uuid": "uuid.UUID",
}
RESERVED = {"api_key", "min_version", "max_version", "flexible_from", "decode", "encode"}
OUT_DIR = Path(__file__).parent / "_generated"
_COMMENTS = re.compile(r"(?m)^\s*//.*\n?")

Range = tuple[int, int] | None


def schema_dir() -> Path:
    """The kafka-python wheel's bundled JSON schemas."""
    import kafka.protocol.schemas as schemas  # dev-time only

    return Path(schemas.__file__).parent / "resources"


def load_schema(path: Path) -> dict:
    return json.loads(_COMMENTS.sub("", path.read_text(encoding="utf-8")))


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


def build_message(schema: dict) -> MessageDef:
    name = schema["name"]
    common = {s["name"]: s["fields"] for s in schema.get("commonStructs", [])}
    seen: dict[str, StructDef] = {}
    root = StructDef(name, name, name)

    def build(sd: StructDef, fields: list[dict]) -> None:
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
                    child = StructDef(elem, f"{name}_{elem}", f"{name}.{elem}")
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


# ---------------------------------------------------------------- code emission


def cond(rng: Range, var: tuple[int, int]) -> str | bool:
    """Python condition for ``v in rng`` within the variant range ``var``, or a constant."""
    r = intersect(rng, var)
    if r is None:
        return False
    if r == var:
        return True
    parts = []
    if r[0] > var[0]:
        parts.append(f"v >= {r[0]}")
    if r[1] < var[1]:
        parts.append(f"v <= {r[1]}")
    return " and ".join(parts)


def default_src(f: Field) -> tuple[str, bool]:
    """(source of the default value, whether it needs a default_factory)."""
    d = f.default
    if f.is_array:
        if d == "null":
            return "None", False
        return "list", True
    if f.struct is not None:
        if d == "null":
            return "None", False
        return f.struct.pyname, True
    t = f.type
    if t == "bool":
        return ("True" if (d or "").lower() == "true" else "False"), False
    if t in FIXED and t != "float64":
        return (str(int(d, 0)) if d else "0"), False
    if t == "float64":
        return (repr(float(d)) if d else "0.0"), False
    if t == "string":
        if d == "null":
            return "None", False
        return repr(d or ""), False
    if t == "bytes":
        return ("None" if d == "null" else "b''"), False
    if t == "records":
        return "None", False
    if t == "uuid":
        return "ZERO_UUID", False
    raise AssertionError(t)


def default_expr(f: Field) -> str:
    src, factory = default_src(f)
    return f"{src}()" if factory else src


def annotation(f: Field) -> str:
    base = f.struct.pyname if f.struct is not None else PY_TYPES[f.elem]
    t = f"list[{base}]" if f.is_array else base
    if f.nullable is not None or default_src(f)[0] == "None":
        t += " | None"
    return t


class Emitter:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.structs: dict[str, str] = {}  # format -> Struct constant name
        self.n = 0

    def struct_const(self, fmt: str) -> str:
        if fmt not in self.structs:
            self.structs[fmt] = f"_S_{fmt}".replace("?", "o")
        return self.structs[fmt]

    def tmp(self) -> str:
        self.n += 1
        return f"_t{self.n}"


def fn_name(kind: str, sd: StructDef, flex: bool) -> str:
    return f"_{kind}_{sd.pyname}_{'f' if flex else 'p'}"


def min_size(sd: StructDef, var: tuple[int, int], flex: bool) -> int:
    """Smallest encoded size of ``sd`` over the variant range (0 allowed)."""
    if flex:
        return 1  # the tagged-fields count
    total = 0
    for f in sd.fields:
        if f.tag is not None or cond(f.versions, var) is not True:
            continue
        if f.is_array:
            total += 4
        elif f.struct is not None:
            total += 1 if f.nullable else min_size(f.struct, var, flex)
        elif f.type in FIXED:
            total += FIXED[f.type][1]
        elif f.type == "uuid":
            total += 16
        elif f.type == "string":
            total += 2
        else:
            total += 4
    return total


def emit_read_value(
    em: Emitter, f: Field, target: str, ind: str, var: tuple[int, int], flex: bool
) -> list[str]:
    """Lines reading one value of field ``f`` (array/struct/primitive) into ``target``."""
    ncond = cond(f.nullable, var) if f.nullable else False
    if ncond is True or ncond is False:
        return _read_value(em, f, target, ind, var, flex, ncond)
    return [
        f"{ind}if {ncond}:",
        *_read_value(em, f, target, ind + "    ", var, flex, True),
        f"{ind}else:",
        *_read_value(em, f, target, ind + "    ", var, flex, False),
    ]


def _prim_reader(t: str, flex: bool, nullable: bool) -> str:
    if t == "string":
        base = "string"
    elif t == "bytes":
        base = "bytes"
    elif t == "records":
        return "_rd_crecords" if flex else "_rd_records"
    elif t == "uuid":
        return "_rd_uuid"
    else:
        raise AssertionError(t)
    return "_rd_" + ("c" if flex else "") + ("n" if nullable else "") + base


def _read_value(
    em: Emitter, f: Field, target: str, ind: str, var: tuple[int, int], flex: bool, nullable: bool
) -> list[str]:
    out: list[str] = []
    if f.is_array:
        n = em.tmp()
        if flex:  # inline fast path of the unsigned varint: one byte for < 127 elements
            out.append(f"{ind}{n} = buf[pos]")
            out.append(f"{ind}if {n} < 0x80:")
            out.append(f"{ind}    {n} -= 1")
            out.append(f"{ind}    pos += 1")
            out.append(f"{ind}else:")
            out.append(f"{ind}    {n}, pos = _rd_ccount(buf, pos)")
        else:
            out.append(f"{ind}{n}, pos = _rd_count(buf, pos)")
        out.append(f"{ind}if {n} < 0:")
        if nullable:
            out.append(f"{ind}    {target} = None")
        else:
            out.append(f"{ind}    raise _not_null({f.attr!r}, v)")
        out.append(f"{ind}else:")
        i2 = ind + "    "
        elem = f.elem
        if f.struct is not None:
            ms = max(min_size(f.struct, var, flex), 1)
            fn = fn_name("d", f.struct, flex)
            x = em.tmp()
            out.append(f"{i2}_chk(buf, pos, {n}, {ms})")
            out.append(f"{i2}{target} = []")
            out.append(f"{i2}for _ in range({n}):")
            out.append(f"{i2}    {x}, pos = {fn}(buf, pos, v)")
            out.append(f"{i2}    {target}.append({x})")
        elif elem in FIXED:
            code, size = FIXED[elem]
            out.append(f"{i2}{target}, pos = _rd_fixed(buf, pos, {n}, {code!r}, {size})")
        else:
            rd = _prim_reader(elem, flex, False)
            x = em.tmp()
            ms = 16 if elem == "uuid" else 1
            out.append(f"{i2}_chk(buf, pos, {n}, {ms})")
            out.append(f"{i2}{target} = []")
            out.append(f"{i2}for _ in range({n}):")
            out.append(f"{i2}    {x}, pos = {rd}(buf, pos)")
            out.append(f"{i2}    {target}.append({x})")
        return out
    if f.struct is not None:
        fn = fn_name("d", f.struct, flex)
        if nullable:
            out.append(f"{ind}if buf[pos] >= 0x80:")
            out.append(f"{ind}    {target} = None")
            out.append(f"{ind}    pos += 1")
            out.append(f"{ind}else:")
            out.append(f"{ind}    {target}, pos = {fn}(buf, pos + 1, v)")
        else:
            out.append(f"{ind}{target}, pos = {fn}(buf, pos, v)")
        return out
    if f.type in FIXED:
        code, size = FIXED[f.type]
        s = em.struct_const(code)
        out.append(f"{ind}({target},) = {s}.unpack_from(buf, pos)")
        out.append(f"{ind}pos += {size}")
        return out
    out.append(f"{ind}{target}, pos = {_prim_reader(f.type, flex, nullable)}(buf, pos)")
    return out


def _prim_writer(t: str, flex: bool, nullable: bool) -> str:
    if t == "uuid":
        return "_wr_uuid"
    base = {"string": "string", "bytes": "bytes"}[t]
    return "_wr_" + ("c" if flex else "") + ("n" if nullable else "") + base


def emit_write_value(
    em: Emitter, f: Field, src: str, ind: str, var: tuple[int, int], flex: bool
) -> list[str]:
    ncond = cond(f.nullable, var) if f.nullable else False
    if ncond is True or ncond is False:
        return _write_value(em, f, src, ind, var, flex, ncond)
    return [
        f"{ind}if {ncond}:",
        *_write_value(em, f, src, ind + "    ", var, flex, True),
        f"{ind}else:",
        *_write_value(em, f, src, ind + "    ", var, flex, False),
    ]


def _write_value(
    em: Emitter, f: Field, src: str, ind: str, var: tuple[int, int], flex: bool, nullable: bool
) -> list[str]:
    out: list[str] = []
    if f.is_array:
        out.append(f"{ind}if {src} is None:")
        if nullable:
            out.append(f"{ind}    p.append({NULL_C if flex else '_NULL32'})")
        else:
            out.append(f"{ind}    raise _not_null({f.attr!r}, v)")
        out.append(f"{ind}else:")
        i2 = ind + "    "
        if flex:
            out.append(f"{i2}p.append(_wr_uvarint(len({src}) + 1))")
        else:
            out.append(f"{i2}p.append(_S_i.pack(len({src})))")
            em.struct_const("i")
        elem = f.elem
        x = em.tmp()
        if f.struct is not None:
            fn = fn_name("e", f.struct, flex)
            out.append(f"{i2}for {x} in {src}:")
            out.append(f"{i2}    {fn}({x}, v, p, r)")
        elif elem in FIXED:
            out.append(f"{i2}p.append(_wr_fixed({FIXED[elem][0]!r}, {src}))")
        else:
            wr = _prim_writer(elem, flex, False)
            out.append(f"{i2}p.extend([{wr}({x}) for {x} in {src}])")
        return out
    if f.struct is not None:
        fn = fn_name("e", f.struct, flex)
        if nullable:
            out.append(f"{ind}if {src} is None:")
            out.append(f"{ind}    p.append(b'\\xff')")
            out.append(f"{ind}else:")
            out.append(f"{ind}    p.append(b'\\x01')")
            out.append(f"{ind}    {fn}({src}, v, p, r)")
        else:
            out.append(f"{ind}{fn}({src}, v, p, r)")
        return out
    if f.type in FIXED:
        s = em.struct_const(FIXED[f.type][0])
        out.append(f"{ind}p.append({s}.pack({src}))")
        return out
    if f.type == "records":
        x = em.tmp()
        out.append(f"{ind}{x} = {src}")
        out.append(f"{ind}if {x} is None:")
        out.append(f"{ind}    p.append({NULL_C if flex else '_NULL32'})")
        out.append(f"{ind}else:")
        if flex:
            out.append(f"{ind}    p.append(_wr_uvarint(len({x}) + 1))")
        else:
            em.struct_const("i")
            out.append(f"{ind}    p.append(_S_i.pack(len({x})))")
        out.append(f"{ind}    r.append(len(p))")
        out.append(f"{ind}    p.append({x})")
        return out
    out.append(f"{ind}p.append({_prim_writer(f.type, flex, nullable)}({src}))")
    return out


def emit_struct_functions(em: Emitter, sd: StructDef, var: tuple[int, int], flex: bool) -> None:
    regular = [f for f in sd.fields if f.tag is None]
    tagged = sorted(
        (
            f
            for f in sd.fields
            if f.tag is not None and flex and cond(intersect(f.tagged, f.versions), var)
        ),
        key=lambda f: f.tag,  # type: ignore[arg-type,return-value]
    )
    # ---- decode
    L = em.lines
    L.append(f"def {fn_name('d', sd, flex)}(buf, pos, v):")
    i = "    "
    k = 0
    while k < len(regular):
        f = regular[k]
        c = cond(f.versions, var)
        target = f"f_{f.attr}"
        if c is False:
            L.append(f"{i}{target} = {default_expr(f)}")
            k += 1
            continue
        # run of fixed-width, non-array, non-struct fields with the same condition
        run = [f]
        if f.type in FIXED:
            j = k + 1
            while j < len(regular):
                g = regular[j]
                if g.type in FIXED and cond(g.versions, var) == c:
                    run.append(g)
                    j += 1
                else:
                    break
        ind = i if c is True else i + "    "
        if c is not True:
            L.append(f"{i}if {c}:")
        if len(run) > 1:
            fmt = "".join(FIXED[g.type][0] for g in run)
            size = sum(FIXED[g.type][1] for g in run)
            s = em.struct_const(fmt)
            L.append(f"{ind}{', '.join('f_' + g.attr for g in run)} = {s}.unpack_from(buf, pos)")
            L.append(f"{ind}pos += {size}")
        else:
            L.extend(emit_read_value(em, f, target, ind, intersect(f.versions, var), flex))
        if c is not True:
            L.append(f"{i}else:")
            for g in run:
                L.append(f"{i}    f_{g.attr} = {default_expr(g)}")
        k += len(run)
    for f in sd.fields:
        if f.tag is not None:
            L.append(f"{i}f_{f.attr} = {default_expr(f)}")
    if flex:
        if tagged:
            L.append(f"{i}_nt, pos = _rd_uvarint(buf, pos)")
            L.append(f"{i}for _ in range(_nt):")
            L.append(f"{i}    _tag, pos, _end = _rd_tag(buf, pos)")
            first = True
            for f in tagged:
                c = cond(intersect(f.tagged, f.versions), var)
                test = f"_tag == {f.tag}" + ("" if c is True else f" and {c}")
                L.append(f"{i}    {'if' if first else 'elif'} {test}:")
                first = False
                tvar = intersect(intersect(f.tagged, f.versions), var)
                L.extend(emit_read_value(em, f, f"f_{f.attr}", i + "        ", tvar, flex))
                L.append(f"{i}        _tag_end(_tag, pos, _end)")
            L.append(f"{i}    pos = _end")
        else:
            L.append(f"{i}if buf[pos]:")
            L.append(f"{i}    pos = _skip_tags(buf, pos)")
            L.append(f"{i}else:")
            L.append(f"{i}    pos += 1")
    args = ", ".join(f"f_{f.attr}" for f in sd.fields)
    L.append(f"{i}return {sd.pyname}({args}), pos")
    L.append("")
    L.append("")
    # ---- encode
    L.append(f"def {fn_name('e', sd, flex)}(o, v, p, r):")
    body_start = len(L)
    k = 0
    while k < len(regular):
        f = regular[k]
        c = cond(f.versions, var)
        if c is False:
            k += 1
            continue
        run = [f]
        if f.type in FIXED:
            j = k + 1
            while j < len(regular):
                g = regular[j]
                if g.type in FIXED and cond(g.versions, var) == c:
                    run.append(g)
                    j += 1
                else:
                    break
        ind = i if c is True else i + "    "
        if c is not True:
            L.append(f"{i}if {c}:")
        if len(run) > 1:
            fmt = "".join(FIXED[g.type][0] for g in run)
            s = em.struct_const(fmt)
            L.append(f"{ind}p.append({s}.pack({', '.join('o.' + g.attr for g in run)}))")
        else:
            L.extend(emit_write_value(em, f, f"o.{f.attr}", ind, intersect(f.versions, var), flex))
        k += len(run)
    if flex:
        if tagged:
            L.append(f"{i}_tags = []")
            for f in tagged:
                c = cond(intersect(f.tagged, f.versions), var)
                test = f"not {is_default_test(f, f'o.{f.attr}')}"
                if c is not True:
                    test = f"{c} and {test}"
                L.append(f"{i}if {test}:")
                L.append(f"{i}    _outer = p")
                L.append(f"{i}    p = []")
                tvar = intersect(intersect(f.tagged, f.versions), var)
                L.extend(emit_write_value(em, f, f"o.{f.attr}", i + "    ", tvar, flex))
                L.append(f"{i}    _tags.append(({f.tag}, b''.join(p)))")
                L.append(f"{i}    p = _outer")
            L.append(f"{i}p.append(_wr_tags(_tags) if _tags else b'\\x00')")
        else:
            L.append(f"{i}p.append(b'\\x00')")
    if len(L) == body_start:
        L.append(f"{i}return")
    L.append("")
    L.append("")


def is_default_test(f: Field, src: str) -> str:
    """Expression: whether ``src`` (the value of ``f``) equals the field's schema default.
    Tagged fields are only written when it does not (cheaper than building a default)."""
    dsrc, _factory = default_src(f)
    if dsrc == "None":
        return f"{src} is None"
    if f.is_array:
        return f"{src} == []"
    if f.struct is not None:
        return f"({src} is not None and {fn_name('isdefault', f.struct, False)[:-2]}({src}))"
    return f"{src} == {dsrc}"


def default_checked_structs(sd: StructDef) -> set[str]:
    """Structs (pynames) whose is-default function is needed below ``sd``."""
    out: set[str] = set()

    def visit(s: StructDef, need: bool) -> None:
        if need:
            if s.pyname in out:
                return
            out.add(s.pyname)
        for f in s.fields:
            if f.struct is not None:
                visit(f.struct, not f.is_array and (need or f.tag is not None))

    visit(sd, False)
    return out


def emit_is_default(em: Emitter, sd: StructDef) -> None:
    L = em.lines
    L.append(f"def {fn_name('isdefault', sd, False)[:-2]}(o):")
    tests = [is_default_test(f, f"o.{f.attr}") for f in sd.fields] or ["True"]
    L.append("    return (")
    for k, t in enumerate(tests):
        L.append(f"        {'and ' if k else ''}{t}")
    L.append("    )")
    L.append("")
    L.append("")


def all_structs(sd: StructDef) -> list[StructDef]:
    """Post-order: children before parents."""
    out: list[StructDef] = []
    for c in sd.children:
        out.extend(all_structs(c))
    out.append(sd)
    return out


def emit_class(em: Emitter, sd: StructDef, msg: MessageDef | None) -> None:
    L = em.lines
    base = "Message" if msg is not None else "Struct"
    L.append("@dataclass(slots=True)")
    L.append(f"class {sd.pyname}({base}):")
    doc = f"{sd.qualname} ({'generated' if msg is None else msg.kind})."
    L.append(f'    """{doc}"""')
    L.append("")
    for f in sd.fields:
        src, factory = default_src(f)
        dflt = f"field(default_factory={src})" if factory else src
        L.append(f"    {f.attr}: {annotation(f)} = {dflt}")
    if not sd.fields:
        L.append("    pass")
    L.append("")
    L.append("")


def spec_src(f: Field) -> str:
    struct = f.struct.pyname if f.struct is not None else "None"
    return (
        f"FieldSpec({f.attr!r}, {f.json_name!r}, {f.spec_type!r}, {struct}, "
        f"{f.versions!r}, {f.nullable!r}, {f.tag!r}, {f.tagged!r})"
    )


def variants(msg: MessageDef) -> list[tuple[tuple[int, int], bool]]:
    lo, hi = msg.valid
    out = []
    flex = msg.flexible
    plain = (lo, hi if flex is None else min(hi, flex[0] - 1))
    if plain[0] <= plain[1]:
        out.append((plain, False))
    if flex is not None:
        fr = (max(lo, flex[0]), hi)
        if fr[0] <= fr[1]:
            out.append((fr, True))
    return out


HEADER = (
    "# GENERATED by backbone.broker.protocol.generate from the JSON message schemas in\n"
    "# kafka-python {version}; do not edit. Regenerate with\n"
    "#   .venv/bin/python -m backbone.broker.protocol.generate\n"
)


def render_module(msgs: list[MessageDef], kp_version: str) -> str:
    em = Emitter()
    body: list[str] = []
    tail: list[str] = []
    for msg in msgs:
        em.lines = []
        structs = all_structs(msg.root)
        for sd in structs:
            emit_class(em, sd, msg if sd is msg.root else None)
        needed = default_checked_structs(msg.root)
        for sd in structs:
            if sd.pyname in needed:
                emit_is_default(em, sd)
        for var, flex in variants(msg):
            for sd in structs:
                emit_struct_functions(em, sd, var, flex)
        body.extend(em.lines)
        # wiring
        for sd in structs:
            if sd is not msg.root:
                tail.append(f"{sd.pyname}.__qualname__ = {sd.qualname!r}")
                tail.append(f"{sd.pyname}.__name__ = {sd.name!r}")
        for sd in structs:
            if sd is not msg.root:  # every struct is reachable from the message class
                tail.append(f"{msg.root.pyname}.{sd.name} = {sd.pyname}")
            for c in sd.children:
                if sd is not msg.root:
                    tail.append(f"{sd.pyname}.{c.name} = {c.pyname}")
        for sd in structs:
            tail.append(f"{sd.pyname}.FIELDS = (")
            for f in sd.fields:
                tail.append(f"    {spec_src(f)},")
            tail.append(")")
        r = msg.root.pyname
        tail.append(f"{r}.api_key = {msg.api_key!r}")
        tail.append(f"{r}.min_version = {msg.valid[0]}")
        tail.append(f"{r}.max_version = {msg.valid[1]}")
        ff = None
        if msg.flexible is not None and msg.flexible[0] <= msg.valid[1]:
            ff = msg.flexible[0]
        tail.append(f"{r}.flexible_from = {ff!r}")
        for _var, flex in variants(msg):
            kind = "flex" if flex else "plain"
            tail.append(f"{r}._decode_{kind} = staticmethod({fn_name('d', msg.root, flex)})")
            tail.append(f"{r}._encode_{kind} = staticmethod({fn_name('e', msg.root, flex)})")
        tail.append("")
    head = [HEADER.format(version=kp_version)]
    head.append("# ruff: noqa")
    head.append("from __future__ import annotations")
    head.append("")
    head.append("import struct as _struct")
    head.append("import uuid")
    head.append("from dataclasses import dataclass, field")
    head.append("")
    head.append("from .._types import (")
    for name, alias in IMPORTS:
        head.append(f"    {name} as {alias}," if alias != name else f"    {name},")
    head.append(")")
    head.append("")
    head.append("_NULL32 = b'\\xff\\xff\\xff\\xff'")
    for fmt, name in sorted(em.structs.items(), key=lambda kv: kv[1]):
        head.append(f"{name} = _struct.Struct({'>' + fmt!r})")
    head.append("")
    head.append("")
    names = [m.root.pyname for m in msgs]
    head.append(f"__all__ = {names!r}")
    head.append("")
    head.append("")
    return "\n".join(head + body + tail) + "\n"


IMPORTS = [
    ("ZERO_UUID", "ZERO_UUID"),
    ("FieldSpec", "FieldSpec"),
    ("Message", "Message"),
    ("Struct", "Struct"),
    ("check_count", "_chk"),
    ("not_nullable", "_not_null"),
    ("read_bytes", "_rd_bytes"),
    ("read_compact_bytes", "_rd_cbytes"),
    ("read_compact_count", "_rd_ccount"),
    ("read_compact_nullable_bytes", "_rd_cnbytes"),
    ("read_compact_nullable_string", "_rd_cnstring"),
    ("read_compact_records", "_rd_crecords"),
    ("read_compact_string", "_rd_cstring"),
    ("read_count", "_rd_count"),
    ("read_fixed_array", "_rd_fixed"),
    ("read_nullable_bytes", "_rd_nbytes"),
    ("read_nullable_string", "_rd_nstring"),
    ("read_records", "_rd_records"),
    ("read_string", "_rd_string"),
    ("read_uuid", "_rd_uuid"),
    ("read_uvarint", "_rd_uvarint"),
    ("skip_tagged_field", "_rd_tag"),
    ("skip_tagged_fields", "_skip_tags"),
    ("tagged_field_end", "_tag_end"),
    ("write_bytes", "_wr_bytes"),
    ("write_compact_bytes", "_wr_cbytes"),
    ("write_compact_nullable_bytes", "_wr_cnbytes"),
    ("write_compact_nullable_string", "_wr_cnstring"),
    ("write_compact_string", "_wr_cstring"),
    ("write_fixed_array", "_wr_fixed"),
    ("write_nullable_bytes", "_wr_nbytes"),
    ("write_nullable_string", "_wr_nstring"),
    ("write_string", "_wr_string"),
    ("write_tagged_fields", "_wr_tags"),
    ("write_uuid", "_wr_uuid"),
    ("write_uvarint", "_wr_uvarint"),
]


def module_name(msg_name: str) -> str:
    base = re.sub(r"(Request|Response)$", "", msg_name)
    return snake(base)


def render_init(groups: dict[str, list[MessageDef]], kp_version: str) -> str:
    """The package index: names and tables only; modules are imported on first use."""
    msgs = sorted((m for ms in groups.values() for m in ms), key=lambda m: m.name)
    reqs = sorted((m.api_key, m) for m in msgs if m.kind == "request")
    resps = sorted((m.api_key, m) for m in msgs if m.kind == "response")
    lines = [
        HEADER.format(version=kp_version),
        '"""Index of the generated messages; each module is imported on first access."""',
        "",
        "# ruff: noqa",
        "import importlib",
        "from types import MappingProxyType",
        "from typing import TYPE_CHECKING",
        "",
        "# message class name -> module under this package",
        "MODULES = MappingProxyType({",
    ]
    lines.extend(f"    {m.name!r}: {module_name(m.name)!r}," for m in msgs)
    lines.append("})")
    lines.append("# api key -> request / response class name")
    lines.append("REQUEST_NAMES = MappingProxyType({")
    lines.extend(f"    {k}: {m.name!r}," for k, m in reqs)
    lines.append("})")
    lines.append("RESPONSE_NAMES = MappingProxyType({")
    lines.extend(f"    {k}: {m.name!r}," for k, m in resps)
    lines.append("})")
    lines.append("API_NAMES = MappingProxyType({")
    lines.extend(f"    {k}: {re.sub('Request$', '', m.name)!r}," for k, m in reqs)
    lines.append("})")
    lines.append("# api key -> first flexible request version (None: never flexible)")
    lines.append("REQUEST_FLEXIBLE_FROM = MappingProxyType({")
    for k, m in reqs:
        ff = m.flexible[0] if m.flexible is not None and m.flexible[0] <= m.valid[1] else None
        lines.append(f"    {k}: {ff!r},")
    lines.append("})")
    lines.append("")
    lines.append("if TYPE_CHECKING:  # static view for type checkers and IDEs")
    for mod in sorted(groups):
        names = ", ".join(m.root.pyname for m in groups[mod])
        lines.append(f"    from .{mod} import {names}")
    lines.append("")
    lines.append(f"__all__ = {[m.name for m in msgs]!r}")
    lines.append("")
    lines.append("")
    lines.append("def __getattr__(name):")
    lines.append("    module = MODULES.get(name)")
    lines.append("    if module is None:")
    lines.append("        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')")
    lines.append("    return getattr(importlib.import_module(f'{__name__}.{module}'), name)")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- cross-check


def layout(fields: list[dict], common: dict, version: int, flexible: bool) -> list:
    """The wire layout of ``fields`` in ``version``, for comparing two schema files."""
    out = []
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
