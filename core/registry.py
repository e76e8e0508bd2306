"""The connector registry: which connector kinds exist, by YAML ``type``.

Kinds come from the entry-point group ``backbone.connectors`` (built-ins register
the same way, see ``pyproject.toml``): each entry point names a
:class:`~backbone.connector.ConnectorKind`. A ``type`` written as
``"package.module:ATTRIBUTE"`` loads that object directly (handy for in-house or
test-only kinds that are not installed as a distribution).

The CLI and the runner build one :class:`Registry` and pass it along; nothing here
is module-level state. A plugin that fails to load does not break the others: it
is listed in :attr:`Registry.broken` and using it is a config error naming the cause.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points

from backbone.connector import RESERVED_OPTIONS, ConnectorKind, ConnectorOptions, Sink, Source

__all__ = ["ENTRY_POINT_GROUP", "Registry"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "backbone.connectors"


class Registry:
    """Connector kinds by name, plus the plugins that failed to load and why."""

    def __init__(self, kinds: Iterable[ConnectorKind] = ()) -> None:
        self._kinds: dict[str, ConnectorKind] = {}
        self.broken: dict[str, str] = {}
        for kind in kinds:
            self.add(kind)

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> Registry:
        """Load every kind registered under the entry-point ``group``."""
        registry = cls()
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            try:
                kind = ep.load()
                registry._check(kind, where=f"entry point {ep.name!r} ({ep.value})")
                if kind.name != ep.name:
                    raise ValueError(
                        f"entry point {ep.name!r} ({ep.value}) names a kind called {kind.name!r}"
                    )
            except Exception as exc:  # a broken plugin must not break the others
                message = f"{type(exc).__name__}: {exc}"
                logger.warning("connector plugin %r failed to load: %s", ep.name, message)
                registry.broken[ep.name] = f"plugin {ep.value} failed to load: {message}"
                continue
            registry._kinds[kind.name] = kind
        return registry

    def add(self, kind: ConnectorKind) -> None:
        """Register ``kind`` (replacing one of the same name)."""
        self._check(kind, where=f"connector kind {getattr(kind, 'name', kind)!r}")
        self._kinds[kind.name] = kind
        self.broken.pop(kind.name, None)

    def load_spec(self, spec: str) -> ConnectorKind:
        """Resolve ``type: "package.module:ATTR"``: import it, register it under ``spec``.

        Raises :class:`ValueError` with a readable message if it cannot.
        """
        if spec in self._kinds:
            return self._kinds[spec]
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
            kind = getattr(module, attr)
        except Exception as exc:
            raise ValueError(
                f"connector type {spec!r} could not be loaded: {type(exc).__name__}: {exc}"
            ) from exc
        self._check(kind, where=f"connector type {spec!r}")
        assert isinstance(kind, ConnectorKind)
        if kind.name != spec:
            kind = dataclasses.replace(kind, name=spec)
        self._kinds[spec] = kind
        return kind

    def get(self, name: str) -> ConnectorKind:
        """The kind called ``name``; :class:`KeyError` with the known kinds otherwise."""
        try:
            return self._kinds[name]
        except KeyError:
            if name in self.broken:
                raise KeyError(self.broken[name]) from None
            raise KeyError(f"unknown connector type {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[ConnectorKind]:
        return iter(sorted(self._kinds.values(), key=lambda k: k.name))

    def names(self, side: str | None = None) -> list[str]:
        """Kind names, sorted; ``side`` = ``"source"`` or ``"sink"`` keeps kinds offering it."""
        return sorted(
            kind.name
            for kind in self._kinds.values()
            if side is None or getattr(kind, side) is not None
        )

    @staticmethod
    def _check(kind: object, *, where: str) -> None:
        """Refuse a kind the runtime could not use, with a message naming what is wrong."""
        if not isinstance(kind, ConnectorKind):
            raise TypeError(f"{where} is a {type(kind).__name__}, not a backbone.ConnectorKind")
        for side, base in (("source", Source), ("sink", Sink)):
            impl = getattr(kind, side)
            options = getattr(kind, f"{side}_options")
            if (impl is None) != (options is None):
                raise TypeError(f"{where}: {side} and {side}_options must be given together")
            if options is None:
                continue
            if not (isinstance(impl, type) and issubclass(impl, base)):
                raise TypeError(
                    f"{where}: {side} must be a class deriving from backbone.{base.__name__}"
                )
            if inspect.isabstract(impl):
                missing = ", ".join(sorted(getattr(impl, "__abstractmethods__", ())))
                raise TypeError(
                    f"{where}: {side} class {impl.__name__} does not implement {missing} "
                    f"(every {base.__name__} defines open, close and "
                    f"{'read' if side == 'source' else 'write'})"
                )
            if not (isinstance(options, type) and issubclass(options, ConnectorOptions)):
                raise TypeError(f"{where}: {side}_options must derive from ConnectorOptions")
            names = {field.alias or name for name, field in options.model_fields.items()} | set(
                options.model_fields
            )
            clash = sorted(names & RESERVED_OPTIONS)
            if clash:
                raise TypeError(
                    f"{where}: {side} options model {options.__name__} defines "
                    + ", ".join(repr(name) for name in clash)
                    + ", reserved by the runtime for every connector (reserved: "
                    + ", ".join(sorted(RESERVED_OPTIONS))
                    + "); rename the option"
                )
        if kind.source is None and kind.sink is None:
            raise TypeError(f"{where} offers neither a source nor a sink")
