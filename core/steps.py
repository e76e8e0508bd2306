"""The processor transform steps as config models, each applying itself.

A processor's ``transforms:`` list validates into these models (a discriminated
union on the one step key, :data:`Transform`). Each step compiles itself once into a
plain function (``compiled``: ``(value, topic) -> topic`` or
:data:`~backbone.transforms.DROP`, paths split and literals bound ahead);
:func:`~backbone.transforms.compile_transforms` chains them for the processor, and
``apply(value, topic)`` (used by :func:`~backbone.transforms.apply_transforms`) runs
the same function and returns whether to keep the event and the routed topic. Steps
change the (copied) JSON value in place; steps other than ``filter`` leave non-object
values alone.
"""

from __future__ import annotations

import copy
from functools import cached_property
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Tag,
    field_validator,
)

from backbone.fields import TopicName
from backbone.transforms import (
    DROP,
    MASK,
    MISSING,
    Expression,
    StepFunction,
    compile_filter,
    get_field,
    pop_field,
    set_field,
    step_tag,
)

__all__ = [
    "DropStep",
    "FilterStep",
    "MaskStep",
    "RenameStep",
    "Route",
    "RouteStep",
    "SetStep",
    "Transform",
]


_SCALARS = frozenset((str, int, float, bool, type(None)))


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    @cached_property
    def compiled(self) -> StepFunction:
        """The step as a plain function ``(value, topic) -> topic`` (or ``DROP``), built once
        (an attribute of the instance once computed: no pydantic lookup per event)."""
        return self._compile()

    def _compile(self) -> StepFunction:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, value: Any, topic: str | None) -> tuple[bool, str | None]:
        """Change ``value`` in place; (keep the event?, the routed topic)."""
        result = self.compiled(value, topic)
        if result is DROP:
            return False, topic
        routed: str | None = result
        return True, routed


class FilterStep(_Step):
    filter: str
    """Keep events for which this expression is true, e.g. ``amount > 100``."""

    @field_validator("filter")
    @classmethod
    def _compiles(cls, value: str) -> str:
        compile_filter(value)
        return value

    @cached_property
    def expression(self) -> Expression:
        """The compiled filter (an attribute of the instance once computed: reading a
        private attribute goes through pydantic's ``__getattr__``, for every event)."""
        return compile_filter(self.filter)

    def _compile(self) -> StepFunction:
        expression = self.expression
        return lambda value, topic: topic if expression(value) else DROP


class SetStep(_Step):
    set: dict[str, Any]
    """Fields to set (dotted paths nest)."""

    def _compile(self) -> StepFunction:
        # (parent path, last name, new value, whether it is a scalar) per field
        plan = [
            (tuple(path.split(".")[:-1]), path.split(".")[-1], new, type(new) in _SCALARS)
            for path, new in self.set.items()
        ]

        def set_fields(value: Any, topic: str | None) -> str | None:
            if isinstance(value, dict):
                for parents, last, new, scalar in plan:
                    current = value  # as set_field: missing or non-object levels become {}
                    for part in parents:
                        child = current.get(part)
                        if not isinstance(child, dict):
                            child = {}
                            current[part] = child
                        current = child
                    # a scalar is shared as is; a list or object is copied per event
                    current[last] = new if scalar else copy.deepcopy(new)
            return topic

        return set_fields


class RenameStep(_Step):
    rename: dict[str, str]
    """Fields to rename: old -> new."""

    def _compile(self) -> StepFunction:
        pairs = tuple(self.rename.items())

        def rename(value: Any, topic: str | None) -> str | None:
            if isinstance(value, dict):
                for old, new in pairs:
                    moved = pop_field(value, old)
                    if moved is not MISSING:
                        set_field(value, new, moved)
            return topic

        return rename


class DropStep(_Step):
    drop: list[str]
    """Fields to remove."""

    def _compile(self) -> StepFunction:
        paths = tuple(self.drop)

        def drop(value: Any, topic: str | None) -> str | None:
            if isinstance(value, dict):
                for path in paths:
                    pop_field(value, path)
            return topic

        return drop


class MaskStep(_Step):
    mask: list[str]
    """Fields whose value is replaced by ``****``."""

    def _compile(self) -> StepFunction:
        names = tuple(path for path in self.mask if "." not in path)  # top-level fields
        paths = tuple(path for path in self.mask if "." in path)
        if len(names) != len(self.mask) and names:  # mixed: keep the listed order
            names, paths = (), tuple(self.mask)

        def mask(value: Any, topic: str | None) -> str | None:
            if isinstance(value, dict):
                for name in names:
                    if name in value:
                        value[name] = MASK
                for path in paths:
                    if get_field(value, path, MISSING) is not MISSING:
                        set_field(value, path, MASK)
            return topic

        return mask


class Route(_Step):
    field: str
    """Field whose value picks the topic."""
    topics: dict[str, TopicName]
    """Field value -> topic."""
    default: TopicName | None = None
    """Topic when no value matches (default: the processor's ``to``)."""


class RouteStep(_Step):
    route: Route
    """Pick the output topic by a field's value."""

    def _compile(self) -> StepFunction:
        field, topics, default = self.route.field, dict(self.route.topics), self.route.default

        def route(value: Any, topic: str | None) -> str | None:
            if isinstance(value, dict):
                found = get_field(value, field)
                chosen = topics.get(str(found)) if found is not None else None
                topic = chosen or default or topic
            return topic

        return route


Transform = Annotated[
    Annotated[FilterStep, Tag("filter")]
    | Annotated[SetStep, Tag("set")]
    | Annotated[RenameStep, Tag("rename")]
    | Annotated[DropStep, Tag("drop")]
    | Annotated[MaskStep, Tag("mask")]
    | Annotated[RouteStep, Tag("route")],
    Discriminator(
        step_tag,
        custom_error_type="unknown_transform",
        custom_error_message="each transform is one of filter, set, rename, drop, mask, route",
    ),
]
"""One step of a processor's ``transforms:`` list."""
