"""Declarative processor transforms and their safe filter expressions.

A processor's ``transforms:`` list is applied in order to each event's JSON value:

- ``filter: "amount > 100 and country in ['DE', 'FR']"`` keeps matching events;
- ``set: {status: "new", meta.source: "shop"}`` sets fields (dotted paths nest);
- ``rename: {old_name: new_name}``; ``drop: [field, ...]``;
- ``mask: [card.number, ...]`` replaces a present field's value with ``"****"``;
- ``route: {field: country, topics: {DE: orders.de}, default: orders.other}``
  picks the output topic by a field's value (no match and no default: the event
  keeps the processor's ``to`` topic).

Filter expressions are parsed with :mod:`ast` and evaluated by walking a small
whitelist (comparisons, ``and``/``or``/``not``, ``in``, literals, field names
with dotted paths, ``is None``); nothing is ever ``eval``-ed. A field that does
not exist reads as ``None``. The step models (:mod:`backbone.steps`) validate
expressions at load time (:func:`compile_filter`) and each applies itself;
:func:`apply_transforms` runs a list of them.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

__all__ = [
    "MASK",
    "MISSING",
    "STEP_NAMES",
    "Expression",
    "Step",
    "apply_transforms",
    "compile_filter",
    "get_field",
    "pop_field",
    "set_field",
    "step_tag",
]

MASK = "****"
MISSING = object()
"""What :func:`pop_field` returns when the field is absent."""

Expression = Callable[[Any], bool]

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: lambda a, b: a is b,
    ast.IsNot: lambda a, b: a is not b,
}


def get_field(value: Any, path: str, default: Any = None) -> Any:
    """``value["a"]["b"]`` for ``path`` ``"a.b"``, or ``default`` when any step is missing."""
    current = value
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        else:
            return default
    return current


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def compile_filter(text: str) -> Expression:
    """Compile a filter expression; :class:`ValueError` with a readable message if invalid."""
    try:
        tree = ast.parse(text, mode="eval")
        evaluate = _build(tree.body, text)
    except SyntaxError as exc:
        raise ValueError(f"invalid filter expression {text!r}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"filter expression {text[:40]!r}... is nested too deeply") from None
    return lambda value: bool(evaluate(value))


def _build(node: ast.expr, text: str) -> Callable[[Any], Any]:
    if isinstance(node, ast.Constant):
        constant = node.value
        return lambda _v: constant
    if isinstance(node, ast.Name) and node.id in {"true", "false", "null"}:
        literal = {"true": True, "false": False, "null": None}[node.id]
        return lambda _v: literal
    path = _dotted(node)
    if path is not None:
        return lambda v: get_field(v, path)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        items = [_build(item, text) for item in node.elts]
        return lambda v: [item(v) for item in items]
    if isinstance(node, ast.BoolOp):
        parts = [_build(item, text) for item in node.values]
        if isinstance(node.op, ast.And):
            return lambda v: all(part(v) for part in parts)
        return lambda v: any(part(v) for part in parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _build(node.operand, text)
        return lambda v: not inner(v)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _build(node.operand, text)

        def negate(v: Any) -> Any:
            operand = inner(v)
            if isinstance(operand, bool) or not isinstance(operand, int | float):
                return None  # like a missing field: comparisons with it are false
            return -operand

        return negate
    if isinstance(node, ast.Compare):
        left = _build(node.left, text)
        ops = [_COMPARE[type(op)] for op in node.ops]
        rights = [_build(item, text) for item in node.comparators]

        def compare(v: Any) -> bool:
            a = left(v)
            for op, right in zip(ops, rights, strict=True):
                b = right(v)
                try:
                    if not op(a, b):
                        return False
                except TypeError:
                    return False
                a = b
            return True

        return compare
    snippet = ast.get_source_segment(text, node) or type(node).__name__
    where = "" if snippet == text else f" in {text!r}"
    raise ValueError(
        f"unsupported filter expression {snippet!r}{where}: use field names, literals, "
        "comparisons (== != < <= > >= in, not in, is None), and/or/not"
    )


def set_field(value: dict[str, Any], path: str, new: Any) -> None:
    """Set ``value["a"]["b"] = new`` for ``path`` ``"a.b"``, creating missing levels."""
    parts = path.split(".")
    current = value
    for part in parts[:-1]:
        child = current.get(part)
        if not isinstance(child, dict):
            child = {}
            current[part] = child
        current = child
    current[parts[-1]] = new


def pop_field(value: dict[str, Any], path: str) -> Any:
    """Remove and return the field at ``path`` (:data:`MISSING` if there is none)."""
    parts = path.split(".")
    current: Any = value
    for part in parts[:-1]:
        current = current.get(part) if isinstance(current, dict) else None
    if isinstance(current, dict) and parts[-1] in current:
        return current.pop(parts[-1])
    return MISSING


class Step(Protocol):
    """A transform step (the models in :mod:`backbone.steps`)."""

    def apply(self, value: Any, topic: str | None) -> tuple[bool, str | None]:
        """Change ``value`` in place; return (keep the event?, the routed topic)."""
        ...


def apply_transforms(
    steps: Sequence[Step], value: Any, *, in_place: bool = False
) -> tuple[bool, Any, str | None]:
    """Run ``steps`` on a copy of the JSON ``value``: ``(keep, new_value, routed_topic)``.

    The input is not modified (unless ``in_place``: the caller owns ``value``, e.g. it
    was just decoded, and spares the copy); a step returning ``keep=False`` (a filter)
    ends the run.
    """
    if not in_place:
        value = copy.deepcopy(value)
    topic: str | None = None
    for step in steps:
        keep, topic = step.apply(value, topic)
        if not keep:
            return False, value, topic
    return True, value, topic


STEP_NAMES = {"filter", "set", "rename", "drop", "mask", "route"}


def step_tag(value: Any) -> str | None:
    """Which transform step a YAML mapping (or a step model) is: its single step key."""
    if isinstance(value, Mapping):
        keys = [key for key in value if key in STEP_NAMES]
        return keys[0] if len(keys) == 1 else None
    return getattr(value, "_tag", None) or next(
        (name for name in STEP_NAMES if name in type(value).model_fields), None
    )
