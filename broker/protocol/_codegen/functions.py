"""Emission of whole decode/encode functions (one pair per struct and variant)."""

from __future__ import annotations

from .emit import (
    Emitter,
    cond,
    default_expr,
    default_src,
    emit_read_value,
    emit_write_value,
    fn_name,
)
from .model import FIXED, Field, StructDef, intersect, overlap


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
            L.extend(emit_read_value(em, f, target, ind, overlap(f.versions, var), flex))
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
                tvar = overlap(intersect(f.tagged, f.versions), var)
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
            L.extend(emit_write_value(em, f, f"o.{f.attr}", ind, overlap(f.versions, var), flex))
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
                tvar = overlap(intersect(f.tagged, f.versions), var)
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
