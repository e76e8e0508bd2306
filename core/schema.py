"""The config model for a registry's connector kinds (built at run time).

``sources``/``sinks`` become discriminated unions on ``type``: each member is the
common fields (:class:`~backbone.settings.SourceSettings` /
:class:`~backbone.settings.SinkSettings`) plus the kind's options model, flattened.
:func:`connector_options` takes a validated entry apart again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Discriminator, Field, Tag
from pydantic import create_model as _create_model

from backbone.connector import ConnectorKind, ConnectorOptions
from backbone.registry import Registry
from backbone.settings import Config, SinkSettings, SourceSettings

__all__ = ["build_config_model", "connector_options", "member_model"]

# field definitions built at run time are beyond what a type checker can follow
create_model: Any = _create_model


def member_model(kind: ConnectorKind, side: str) -> type[BaseModel]:
    """The model of one ``sources``/``sinks`` entry of ``kind``: common fields + options."""
    common = SourceSettings if side == "source" else SinkSettings
    options: type[ConnectorOptions] = getattr(kind, f"{side}_options")
    safe = re.sub(r"\W", "_", kind.name)
    model: type[BaseModel] = create_model(
        f"{safe}_{side}",
        __base__=(common, options),
        type=(Literal[kind.name], Field(description=f"Connector kind: {kind.name}.")),
    )
    model.__doc__ = kind.summary
    return model


def _union(registry: Registry, side: str) -> Any:
    members = [
        Annotated[member_model(kind, side), Tag(kind.name)]
        for kind in registry
        if getattr(kind, side) is not None
    ]
    if not members:
        return SourceSettings if side == "source" else SinkSettings
    known = ", ".join(registry.names(side))

    def tag(value: Any) -> str | None:
        if isinstance(value, Mapping):
            found = value.get("type")
            return found if isinstance(found, str) else None
        return getattr(value, "type", None)

    return Annotated[
        Union[tuple(members)],  # noqa: UP007 - built at run time
        Discriminator(
            tag,
            custom_error_type="unknown_kind",
            custom_error_message=f"unknown or missing connector type (known: {known})",
        ),
    ]


def build_config_model(registry: Registry) -> type[Config]:
    """The :class:`Config` model with ``sources``/``sinks`` typed by the registry's kinds."""
    source_entry, sink_entry = _union(registry, "source"), _union(registry, "sink")
    model: type[Config] = create_model(
        "Config",
        __base__=Config,
        sources=(dict[str, source_entry], Field(default_factory=dict)),  # type: ignore[valid-type]
        sinks=(dict[str, sink_entry], Field(default_factory=dict)),  # type: ignore[valid-type]
    )
    return model


def connector_options(entry: BaseModel, options: type[ConnectorOptions]) -> ConnectorOptions:
    """Extract the kind's own options from a validated source/sink entry."""
    given = {
        name: getattr(entry, name)
        for name in options.model_fields
        if name in entry.model_fields_set
    }
    return options.model_validate(given)
