"""Turning pydantic validation errors into ``file:line:col: path: message`` lines.

Called by :func:`backbone.config.load_config` only. A pydantic error location is
mapped back to a document path (pydantic inserts discriminated-union tags and
``[key]`` markers that are not document keys), then to a position in the file
(:class:`~backbone.yamlload.Locations`). Unknown keys get a "did you mean"
(difflib) or the list of expected keys; unknown connector types list the known
kinds of that side.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, Discriminator, ValidationError

from backbone.registry import Registry
from backbone.transforms import step_tag
from backbone.yamlload import Document, PathKey, format_path

__all__ = ["describe", "line_col"]

_POSITION = re.compile(r"^.*?:(\d+):(\d+): ")


def line_col(problem: str) -> tuple[int, int]:
    """``(line, col)`` of a formatted problem (``(0, 0)`` if it has none), for sorting."""
    match = _POSITION.match(problem)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _strip(annotation: Any) -> tuple[Any, bool]:
    """Peel Annotated / Optional wrappers (keeps multi-member unions).

    Also tells whether a :class:`Discriminator` was seen: pydantic then puts the
    chosen tag into error locations, which are not document keys.
    """
    tagged = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            args = typing.get_args(annotation)
            tagged = tagged or any(isinstance(meta, Discriminator) for meta in args[1:])
            annotation = args[0]
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation, tagged


def _choose(members: tuple[Any, ...], node: Any) -> Any:
    for member in members:
        model, _ = _strip(member)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        if "type" in model.model_fields and isinstance(node, dict):
            literal = typing.get_args(model.model_fields["type"].annotation)
            if literal and node.get("type") == literal[0]:
                return model
        elif isinstance(node, dict) and step_tag(node) in model.model_fields:
            return model
    return None


def _walk(root: type[BaseModel], loc: tuple[Any, ...], data: Any) -> tuple[PathKey, Any]:
    """Map a pydantic ``loc`` to a document path (dropping union tags and ``[key]``).

    Returns the path and the annotation reached at its end (a model class, a
    container type, or ``None`` when it cannot tell).
    """
    path: list[str | int] = []
    annotation: Any = root
    node = data
    parts = list(loc)
    index = 0
    while index < len(parts):
        part = parts[index]
        annotation, tagged = _strip(annotation)
        if typing.get_origin(annotation) in (Union, types.UnionType):
            annotation = _choose(typing.get_args(annotation), node)
        if tagged:
            index += 1  # skip the tag pydantic inserted into the loc
            continue
        if part == "[key]":
            index += 1
            continue
        path.append(part)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            annotation = field.annotation if field is not None else None
        elif origin is dict:
            annotation = typing.get_args(annotation)[1]
        elif origin is list:
            annotation = typing.get_args(annotation)[0]
        else:
            annotation = None
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
        index += 1
    return tuple(path), _strip(annotation)[0]


def describe(
    exc: ValidationError,
    model: type[BaseModel],
    data: dict[str, Any],
    document: Document,
    registry: Registry,
    failed: set[str],
) -> list[str]:
    """One formatted line per error of ``exc`` (``failed``: types already reported)."""
    locations = document.locations
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        kind = error["type"]
        message = error["msg"]
        if kind == "extra_forbidden":
            parent, parent_type = _walk(model, loc[:-1], data)
            path = (*parent, loc[-1])
            known = (
                sorted(parent_type.model_fields)
                if isinstance(parent_type, type) and issubclass(parent_type, BaseModel)
                else []
            )
            message = f"unknown key {loc[-1]!r}"
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            # a model may name keys it leaves out on purpose, and why (OWNED_KEYS)
            owned = getattr(parent_type, "OWNED_KEYS", {})
            if loc[-1] in owned:
                message = f"{loc[-1]!r} cannot be set here: {owned[loc[-1]]}"
            elif close:
                message += f"; did you mean {close[0]!r}?"
            elif known:
                message += f" (expected one of: {', '.join(known)})"
            where = locations.where(path, prefer_key=True)
        elif kind == "missing":
            path, _ = _walk(model, loc[:-1], data)
            message = f"missing required key {loc[-1]!r}"
            where = locations.where(path, prefer_key=True)
        elif kind == "unknown_kind":
            path, _ = _walk(model, loc, data)
            side = "source" if path[:1] == ("sources",) else "sink"
            known = registry.names(side)
            entry = _lookup(data, path)
            given = entry.get("type") if isinstance(entry, dict) else None
            if given in failed:
                continue  # already reported: the type could not be loaded
            if not isinstance(entry, dict):
                message = "expected a mapping with a 'type' key"
                where = locations.where(path)
            elif given is None:
                message = f"missing required key 'type' (known {side} types: {', '.join(known)})"
                where = locations.where(path, prefer_key=True)
            else:
                path = (*path, "type")
                where = locations.where(path)
                if isinstance(given, str) and given in registry.broken:
                    message = f"connector type {given!r} is unavailable: {registry.broken[given]}"
                elif isinstance(given, str) and given in registry:
                    message = f"connector type {given!r} has no {side}"
                else:
                    message = f"unknown {side} type {given!r}"
                    close = difflib.get_close_matches(str(given), known, n=1, cutoff=0.6)
                    if close:
                        message += f"; did you mean {close[0]!r}?"
                message += f" (known {side} types: {', '.join(known)})"
        elif kind == "unknown_transform":
            path, _ = _walk(model, loc, data)
            where = locations.where(path)
        else:
            path, _ = _walk(model, loc, data)
            mapping = isinstance(_lookup(data, path), dict)
            where = locations.where(path, prefer_key="[key]" in loc or mapping)
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
        problems.append(f"{where}: {format_path(path)}: {message}")
    return problems


def _lookup(data: Any, path: PathKey) -> Any:
    node = data
    for part in path:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return None
    return node
