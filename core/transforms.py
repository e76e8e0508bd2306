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
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

__all__ = [
    "DROP",
    "MASK",
    "MISSING",
    "STEP_NAMES",
    "Expression",
    "Step",
    "StepFunction",
    "apply_transforms",
    "compile_filter",
    "compile_transforms",
    "get_field",
    "pop_field",
    "set_field",
    "step_tag",
]

MASK = "****"
MISSING = object()
"""What :func:`pop_field` returns when the field is absent."""
DROP = object()
"""What a compiled step (:data:`StepFunction`) returns for an event it filters out."""

Expression = Callable[[Any], bool]
StepFunction = Callable[[Any, "str | None"], Any]
"""A compiled step: ``(value, topic) -> topic`` (the routed topic so far, or :data:`DROP`),
changing ``value`` in place."""

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
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


def _reader(path: str) -> Callable[[Any], Any]:
    """:func:`get_field` of ``path`` as a function of the value, split once."""
    parts = path.split(".")
    if len(parts) == 1:
        name = parts[0]

        def read_one(value: Any) -> Any:
            if type(value) is dict:  # decoded JSON: no Mapping (ABC) check
                return value.get(name)
            return get_field(value, path)

        return read_one

    def read(value: Any) -> Any:
        current = value
        for part in parts:
            if (type(current) is dict or isinstance(current, Mapping)) and part in current:
                current = current[part]
            else:
                return None
        return current

    return read


def _constant(node: ast.expr) -> tuple[bool, Any]:
    """Whether ``node`` is a literal (or a list, tuple or set of literals), and its value."""
    if isinstance(node, ast.Constant):
        return True, node.value
    if isinstance(node, ast.Name) and node.id in _LITERALS:
        return True, _LITERALS[node.id]
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        items = [_constant(item) for item in node.elts]
        if all(known for known, _ in items):
            # a list, as the expression builds it: read only by the comparisons
            return True, [item for _, item in items]
    return False, None


_LITERALS = {"true": True, "false": False, "null": None}


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
    if isinstance(tree.body, ast.Compare | ast.BoolOp) or (
        isinstance(tree.body, ast.UnaryOp) and isinstance(tree.body.op, ast.Not)
    ):
        return evaluate  # already True or False
    return lambda value: bool(evaluate(value))


def _build(node: ast.expr, text: str) -> Callable[[Any], Any]:
    """The function of the value that ``node`` evaluates to (closures, built once)."""
    known, constant = _constant(node)
    if known:
        return lambda _v: constant
    path = _dotted(node)
    if path is not None:
        return _reader(path)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        items = [_build(item, text) for item in node.elts]
        return lambda v: [item(v) for item in items]
    if isinstance(node, ast.BoolOp):
        parts = tuple(_build(item, text) for item in node.values)
        if isinstance(node.op, ast.And):

            def all_of(v: Any) -> bool:
                for part in parts:  # noqa: SIM110 - all() would build a generator per call
                    if not part(v):
                        return False
                return True

            return all_of

        def any_of(v: Any) -> bool:
            for part in parts:  # noqa: SIM110 - any() would build a generator per call
                if part(v):
                    return True
            return False

        return any_of
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
        known, right_value = _constant(node.comparators[0])
        path = None if _constant(node.left)[0] else _dotted(node.left)  # not true/false/null
        if len(ops) == 1 and known and path is not None and "." not in path:
            op, name = ops[0], path  # the most common: ``field OP literal``, read inline

            def compare_field(v: Any) -> bool:
                a = v.get(name) if type(v) is dict else get_field(v, name)
                try:
                    return bool(op(a, right_value))
                except TypeError:  # ordering across types: the filter does not match
                    return False

            return compare_field
        if len(ops) == 1 and known:  # ``expression OP literal``
            op = ops[0]

            def compare_constant(v: Any) -> bool:
                a = left(v)
                try:
                    return bool(op(a, right_value))
                except TypeError:  # ordering across types: the filter does not match
                    return False

            return compare_constant

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


def compile_transforms(steps: Sequence[Step]) -> Callable[[Any], Any]:
    """``steps`` as one function of a JSON value, changed in place: the routed topic
    (``None``: not routed) or :data:`DROP` when a filter drops the event. Each step is
    compiled once (its ``compiled`` function); the result does no per-call set-up."""
    functions = tuple(_compiled(step) for step in steps)
    if len(functions) == 1:
        only = functions[0]
        return lambda value: only(value, None)

    def run(value: Any) -> Any:
        topic = None
        for function in functions:
            topic = function(value, topic)
            if topic is DROP:
                return DROP
        return topic

    return run


def _compiled(step: Step) -> StepFunction:
    compiled: StepFunction | None = getattr(step, "compiled", None)
    if compiled is not None:
        return compiled

    def apply(value: Any, topic: str | None) -> Any:
        keep, topic = step.apply(value, topic)
        return topic if keep else DROP

    return apply


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
