"""The YAML configuration file: one pydantic model tree, all errors at once.

The CLI (``backbone validate`` / ``backbone run``) calls :func:`load_config`, which
reads the file (:mod:`backbone.yamlload`: positions + ``${VAR}`` interpolation),
builds the model for the kinds in the given :class:`~backbone.registry.Registry`
(:func:`build_config_model`: ``sources``/``sinks`` are discriminated unions on
``type``, each member = the common fields + the kind's options model, flattened)
and validates. Every problem becomes one line ``file:line:col: path: message``;
they are raised together as :class:`~backbone.errors.ConfigError`.

Relative paths (``broker.embedded.data_dir``, ``runtime.state_dir``, connector
files and SQLite URLs via :meth:`ConnectorContext.resolve`) are relative to the
config file's folder (:attr:`Config.base_dir`). The TLS and key files of
``broker.security`` and ``broker.embedded`` are made absolute here (``backbone validate
--check`` checks they exist, as it does for SQLite files: :func:`security_files`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backbone.diagnostics import describe, line_col
from backbone.errors import ConfigError
from backbone.fields import NAME
from backbone.registry import Registry
from backbone.schema import build_config_model, connector_options, member_model
from backbone.settings import (
    BrokerSettings,
    Config,
    EmbeddedBroker,
    HttpSettings,
    ProcessorSettings,
    RetryPolicy,
    RuntimeSettings,
    SinkSettings,
    SourceSettings,
    TopicSettings,
)
from backbone.steps import DropStep, FilterStep, MaskStep, RenameStep, Route, RouteStep, SetStep
from backbone.yamlload import Document, format_path, load_document

__all__ = [
    "BrokerSettings",
    "Config",
    "DropStep",
    "EmbeddedBroker",
    "FilterStep",
    "HttpSettings",
    "MaskStep",
    "ProcessorSettings",
    "RenameStep",
    "RetryPolicy",
    "Route",
    "RouteStep",
    "RuntimeSettings",
    "SetStep",
    "SinkSettings",
    "SourceSettings",
    "TopicSettings",
    "build_config_model",
    "connector_options",
    "load_config",
    "member_model",
    "security_files",
]


def load_config(
    path: str | Path, registry: Registry, *, env: Mapping[str, str] | None = None
) -> Config:
    """Load and validate the config at ``path``; :class:`ConfigError` lists every problem.

    ``type: "package.module:ATTR"`` entries are loaded into ``registry`` first.
    """
    file = Path(path)
    display = str(path)
    try:
        document = load_document(file, os.environ if env is None else env, display=display)
    except OSError as exc:
        raise ConfigError([f"{display}: cannot read the file: {exc.strerror or exc}"]) from None
    problems = list(document.problems)
    data = document.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [*problems, f"{display}:1:1: (top level): expected a mapping of sections"]
        )
    failed: set[str] = set()
    problems.extend(_load_specs(data, document, registry, failed))
    model = build_config_model(registry)
    config: Config | None = None
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        problems.extend(describe(exc, model, data, document, registry, failed))
    if config is not None:
        problems.extend(_cross_checks(config, document))
        _resolve_files(config, file.resolve().parent)
        problems.extend(_http_checks(config, document, registry))
    if problems:
        raise ConfigError(sorted(_dedupe(problems), key=line_col))
    assert config is not None
    config._base_dir = file.resolve().parent
    config._file = display
    return config


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _load_specs(
    data: dict[str, Any], document: Document, registry: Registry, failed: set[str]
) -> list[str]:
    problems = []
    for section in ("sources", "sinks"):
        entries = data.get(section)
        if not isinstance(entries, dict):
            continue
        for name, entry in entries.items():
            kind = entry.get("type") if isinstance(entry, dict) else None
            if isinstance(kind, str) and ":" in kind and kind not in registry:
                try:
                    registry.load_spec(kind)
                except (ValueError, TypeError) as exc:
                    failed.add(kind)
                    path = (section, name, "type")
                    problems.append(f"{document.locations.where(path)}: {format_path(path)}: {exc}")
    return problems


_SECURITY_FILES = (
    (("security", "tls"), ("ca", "cert", "key")),
    (("embedded", "tls"), ("cert", "key", "ca")),
    (("embedded", "sasl", "oauthbearer"), ("public_key",)),
)


def _resolve_files(config: Config, base: Path) -> None:
    """Make the security file paths of ``broker`` absolute (against ``base``)."""

    def fix(model: Any, prefix: tuple[str, ...], names: tuple[str, ...]) -> Any:
        if model is None:
            return None
        if prefix:
            child = fix(getattr(model, prefix[0]), prefix[1:], names)
            return model.model_copy(update={prefix[0]: child})
        updates: dict[str, str] = {}
        for name in names:
            value = getattr(model, name)
            if value is not None:
                path = Path(value).expanduser()
                updates[name] = str(path if path.is_absolute() else base / path)
        return model.model_copy(update=updates)

    broker = config.broker
    for prefix, names in _SECURITY_FILES:
        broker = fix(broker, prefix, names)
    object.__setattr__(config, "broker", broker)


def security_files(config: Config) -> list[tuple[str, Path]]:
    """(``broker.security.tls.ca``-style path in the document, absolute file) of every
    TLS and key file the config names."""
    found: list[tuple[str, Path]] = []
    for prefix, names in _SECURITY_FILES:
        model: Any = config.broker
        for part in prefix:
            model = getattr(model, part, None) if model is not None else None
        if model is None:
            continue
        for name in names:
            value = getattr(model, name)
            if value is not None:
                found.append((".".join(("broker", *prefix, name)), Path(value)))
    return found


def _cross_checks(config: Config, document: Document) -> list[str]:
    problems = []
    seen: dict[str, str] = {}
    for section in ("sources", "sinks", "processors"):
        for name in getattr(config, section):
            path = (section, name)
            where = document.locations.where(path, prefer_key=True)
            if not NAME.match(name):
                problems.append(
                    f"{where}: {format_path(path)}: invalid connector name {name!r} "
                    "(letters, digits, '.', '_', '-'; starting with a letter or digit)"
                )
            if name in seen:
                problems.append(
                    f"{where}: {format_path(path)}: the name {name!r} is already used in "
                    f"{seen[name]}; connector names must be unique across sources, sinks and "
                    "processors"
                )
            seen.setdefault(name, section)
    return problems


def _http_checks(config: Config, document: Document, registry: Registry) -> list[str]:
    """Sources that receive requests (``Source.ingress``) need ``http:``; paths are unique."""
    problems = []
    paths: dict[tuple[str, str], str] = {}
    for name, entry in config.sources.items():
        kind = registry.get(entry.type) if entry.type in registry else None
        if kind is None or kind.source is None or not kind.source.ingress:
            continue
        path = ("sources", name)
        where = document.locations.where(path, prefer_key=True)
        if config.http is None:
            problems.append(
                f"{where}: {format_path(path)}: a {kind.name} source receives HTTP requests: "
                "add an http section to the config, e.g. `http: {listen: 127.0.0.1:8080}`"
            )
        route = getattr(entry, "path", None)
        for method in getattr(entry, "methods", None) or ():
            if isinstance(route, str):
                other = paths.setdefault((route, method), name)
                if other != name:
                    problems.append(
                        f"{where}: {format_path(path)}: path {route} ({method}) is already "
                        f"served by sources.{other}"
                    )
                    break
    return problems
