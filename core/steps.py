"""The processor transform steps as config models, each applying itself.

A processor's ``transforms:`` list validates into these models (a discriminated
union on the one step key, :data:`Transform`); :func:`~backbone.transforms.apply_transforms`
calls each step's ``apply(value, topic)``, which changes the (copied) JSON value in
place and returns whether to keep the event and the routed topic. Steps other than
``filter`` leave non-object values alone.
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
    MASK,
    MISSING,
    Expression,
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

    def apply(self, value: Any, topic: str | None) -> tuple[bool, str | None]:
        return self.expression(value), topic


class SetStep(_Step):
    set: dict[str, Any]
    """Fields to set (dotted paths nest)."""

    def apply(self, value: Any, topic: str | None) -> tuple[bool, str | None]:
        if isinstance(value, dict):
            for path, new in self.set.items():
                # a scalar is shared as is; a list or object is copied per event
                set_field(value, path, new if type(new) in _SCALARS else copy.deepcopy(new))
        return True, topic


class RenameStep(_Step):
    rename: dict[str, str]
    """Fields to rename: old -> new."""

    def apply(self, value: Any, topic: str | None) -> tuple[bool, str | None]:
        if isinstance(value, dict):
            for old, new in self.rename.items():
                moved = pop_field(value, old)
                if moved is not MISSING:
                    set_field(value, new, moved)
        return True, topic


class DropStep(_Step):
    drop: list[str]
    """Fields to remove."""

    def apply(self, value: Any, topic: str | None) -> tuple[bool, str | None]:
        if isinstance(value, dict):
            for path in self.drop:
                pop_field(value, path)
        return True, topic


class MaskStep(_Step):
    mask: list[str]
    """Fields whose value is replaced by ``****``."""

    def apply(self, value: Any, topic: str | None) -> tuple[bool, str | None]:
        if isinstance(value, dict):
            for path in self.mask:
                if get_field(value, path, MISSING) is not MISSING:
                    set_field(value, path, MASK)
        return True, topic


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

    def apply(self, value: Any, topic: str | None) -> tuple[bool, str | None]:
        if isinstance(value, dict):
            found = get_field(value, self.route.field)
            chosen = self.route.topics.get(str(found)) if found is not None else None
            topic = chosen or self.route.default or topic
        return True, topic


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
