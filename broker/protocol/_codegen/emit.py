"""Emission of the per-field read and write code of the generated decode/encode functions."""

from __future__ import annotations

from .model import FIXED, NULL_C, PY_TYPES, Field, Range, StructDef, intersect


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
    base = f.struct.qualname if f.struct is not None else PY_TYPES[f.elem]
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
