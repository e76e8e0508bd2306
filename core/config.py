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
config file's folder (:attr:`Config.base_dir`).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from backbone.connector import ConnectorKind, ConnectorOptions
from backbone.diagnostics import describe, line_col
from backbone.errors import ConfigError
from backbone.registry import Registry
from backbone.transforms import compile_filter, step_tag
from backbone.types import Duration, parse_duration, parse_size
from backbone.yamlload import Document, format_path, load_document

__all__ = [
    "BrokerSettings",
    "Config",
    "EmbeddedBroker",
    "HttpSettings",
    "ProcessorSettings",
    "RetryPolicy",
    "RuntimeSettings",
    "SinkSettings",
    "SourceSettings",
    "TopicSettings",
    "build_config_model",
    "connector_options",
    "load_config",
]

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_HOSTPORT = re.compile(r"^\[?[A-Za-z0-9._:-]*\]?:\d{1,5}$")
_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _topic_name(value: Any) -> Any:
    if isinstance(value, str) and not _TOPIC.match(value):
        raise ValueError(
            f"{value!r} is not a valid topic name "
            "(1-249 characters: letters, digits, '.', '_', '-')"
        )
    return value


def _host_port(value: Any) -> Any:
    if isinstance(value, str) and not _HOSTPORT.match(value):
        raise ValueError(f"expected HOST:PORT like 127.0.0.1:9092 (got {value!r})")
    return value


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _start(value: Any) -> Any:
    if value in ("earliest", "latest"):
        return value
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    raise ValueError(
        f"expected earliest, latest or an ISO-8601 timestamp like 2024-05-01T00:00:00Z "
        f"(got {value!r})"
    )


_INTEGER = re.compile(r"^\s*-?\d+\s*$")


def _kafka_number(key: str, value: Any) -> Any:
    """A raw topic config value, with sizes (``*.bytes``) and durations (``*.ms``) converted.

    ``segment.bytes: 64MiB`` -> ``"67108864"``, ``retention.ms: 7d`` -> ``"604800000"``.
    Integers and integer strings (``-1`` included: Kafka's "unlimited") pass through
    unchanged; other values of such keys raise :class:`ValueError`. Values of other
    keys are returned as given.
    """
    if key.endswith(".bytes"):
        unit, expected = "size", 'a size like "64MiB" or a whole number of bytes'
    elif key.endswith(".ms"):
        unit, expected = "ms", 'a duration like "7d" or a whole number of milliseconds'
    else:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        if _INTEGER.match(value):
            return value.strip()
        try:
            if unit == "size":
                return str(parse_size(value))
            millis = parse_duration(value) * 1000
        except ValueError:
            pass
        else:
            if abs(millis - round(millis)) < 1e-6:
                return str(round(millis))
    raise ValueError(f"expected {expected} (got {value!r})")


def _config_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


TopicName = Annotated[str, BeforeValidator(_topic_name)]
HostPort = Annotated[str, BeforeValidator(_host_port)]
Start = Annotated[
    Literal["earliest", "latest"] | dt.datetime,
    BeforeValidator(_start),
]
ConfigValue = Annotated[
    str,
    BeforeValidator(_config_value),
    WithJsonSchema({"type": ["string", "integer", "number", "boolean"]}, mode="validation"),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class EmbeddedBroker(_Model):
    """The broker running inside the gateway process."""

    listen: HostPort = "127.0.0.1:9092"
    """Address the embedded broker listens on (HOST:PORT; port 0 = any free port)."""
    data_dir: str = "./data"
    """Folder of the broker's log, relative to the config file's folder."""
    advertised_listener: HostPort | None = None
    """HOST:PORT clients are told to connect to (default: the listen address)."""


class BrokerSettings(_Model):
    """Either an embedded broker (the default) or an existing Kafka cluster."""

    embedded: EmbeddedBroker | None = None
    """Run the embedded broker (default when ``bootstrap`` is not given)."""
    bootstrap: Annotated[list[HostPort] | None, BeforeValidator(_split)] = Field(
        default=None, min_length=1
    )
    """Bootstrap servers of an existing Kafka cluster (a list, or one comma-separated
    string such as ``${KAFKA_BOOTSTRAP}``); no embedded broker is started."""
    idempotence: bool = True
    """Use an idempotent producer (no duplicates on produce retries). Turn off only for
    brokers that refuse InitProducerId (e.g. Tansu); delivery stays at-least-once."""

    @model_validator(mode="after")
    def _one_of(self) -> BrokerSettings:
        if self.embedded is not None and self.bootstrap is not None:
            raise ValueError("give either embedded or bootstrap, not both")
        if self.bootstrap is None and self.embedded is None:
            object.__setattr__(self, "embedded", EmbeddedBroker())
        return self


class HttpSettings(_Model):
    """The HTTP side (webhooks, admin API)."""

    listen: HostPort = "127.0.0.1:8080"
    """Address the HTTP server listens on."""


class RuntimeSettings(_Model):
    """How the runner behaves (all optional)."""

    grace_period: Duration = 10.0
    """On SIGINT/SIGTERM, how long in-flight work may drain before it is cancelled."""
    state_dir: str = ".backbone-state"
    """Folder for connectors' local state, relative to the config file's folder."""
    position_interval: Duration = 0.5
    """How often a source's acknowledged position is saved (at most)."""
    session_timeout: Duration = 10.0
    """Consumer-group session timeout of sinks and processors."""
    heartbeat_interval: Duration = 1.0
    """Consumer-group heartbeat interval of sinks and processors."""
    max_batch: int = Field(default=500, ge=1)
    """Most records handed to one sink ``write`` call."""


class TopicSettings(_Model):
    """A topic the runner creates at start (nothing happens if it exists)."""

    partitions: int = Field(default=1, ge=1)
    """Number of partitions."""
    replication_factor: int = Field(default=1, ge=-1)
    """Replicas per partition (1 for the embedded broker; -1 = the cluster's default)."""
    retention: Duration | None = None
    """How long records are kept (``retention.ms``), e.g. 7d."""
    cleanup: Literal["delete", "compact", "compact,delete"] | None = None
    """``cleanup.policy``: delete old segments, or keep the latest record per key."""
    config: dict[str, ConfigValue] = Field(default_factory=dict)
    """Raw Kafka topic configs, e.g. ``segment.bytes: 64MiB``. Values of keys ending in
    ``.bytes`` may be sizes (``64MiB``) and of keys ending in ``.ms`` durations (``7d``):
    both are converted to the integer Kafka expects; other values are applied as given."""

    @field_validator("config", mode="before")
    @classmethod
    def _units(cls, value: Any) -> Any:
        """Convert ``*.bytes`` sizes and ``*.ms`` durations; one error per bad key."""
        if not isinstance(value, Mapping):
            return value
        converted: dict[Any, Any] = {}
        errors: list[InitErrorDetails] = []
        for key, item in value.items():
            try:
                converted[key] = _kafka_number(key, item) if isinstance(key, str) else item
            except ValueError as exc:
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError("value_error", "{reason}", {"reason": str(exc)}),
                        loc=(key,),
                        input=item,
                    )
                )
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return converted

    def kafka_configs(self) -> dict[str, str]:
        """The Kafka topic configs this entry asks for."""
        configs = dict(self.config)
        if self.retention is not None:
            configs.setdefault("retention.ms", str(int(self.retention * 1000)))
        if self.cleanup is not None:
            configs.setdefault("cleanup.policy", self.cleanup)
        return configs


class RetryPolicy(_Model):
    """Retries of a connector's ``RetriableError`` (exponential backoff with jitter).

    What is retried, and for how long:

    - a sink's ``write(batch)`` and a processor's function (per record): at most
      ``max_attempts`` calls; then the records go to ``dead_letter_topic``, or, when
      there is none, the connector stops in state FAILED with the error;
    - a source's ``open()`` and ``read()`` and a sink's ``open()``: retried without
      limit (waits grow to ``max_backoff`` and stay there), because giving up would
      skip records or stop the pipeline; ``max_attempts`` does not apply to them.

    Waits never block other connectors, and a stop request ends them at once.
    """

    max_attempts: int = Field(default=10, ge=1)
    """Calls of a sink's ``write`` (or a processor's function) before its records go to
    the dead-letter topic, or, without one, the connector stops FAILED. A source's
    ``open``/``read`` and a sink's ``open`` are retried without limit."""
    initial_backoff: Duration = 0.2
    """Wait after the first failed attempt; doubles after each further failure (up to
    ``max_backoff``). Each wait is a random 50-100% of that (jitter) and never shorter
    than the error's ``retry_after``."""
    max_backoff: Duration = 30.0
    """Cap of the doubling wait between attempts (before jitter)."""


class SourceSettings(_Model):
    """Fields every source has (the kind's options are flattened next to them)."""

    type: str
    """Connector kind (``backbone connectors`` lists them)."""
    topic: TopicName
    """Topic the records go to (a record may name another)."""
    dead_letter_topic: TopicName | None = None
    """Where records the source cannot parse or serialize go (else the source fails)."""
    retry: RetryPolicy = RetryPolicy()
    """Backoff of retriable errors of ``open``/``read``, which are retried without limit
    (``max_attempts`` does not apply: a source never skips records)."""


class SinkSettings(_Model):
    """Fields every sink has (the kind's options are flattened next to them)."""

    type: str
    """Connector kind (``backbone connectors`` lists them)."""
    topics: list[TopicName] = Field(min_length=1)
    """Topics to consume."""
    start: Start = "earliest"
    """Where a new sink (no committed offsets) starts: earliest, latest or a timestamp."""
    dead_letter_topic: TopicName | None = None
    """Where records that cannot be written go (else the sink fails)."""
    retry: RetryPolicy = RetryPolicy()
    """Retries of a failing ``write``: ``max_attempts`` calls, then the dead-letter topic
    (or FAILED). ``open`` is retried without limit."""


class FilterStep(_Model):
    filter: str
    """Keep events for which this expression is true, e.g. ``amount > 100``."""

    @field_validator("filter")
    @classmethod
    def _compiles(cls, value: str) -> str:
        compile_filter(value)
        return value


class SetStep(_Model):
    set: dict[str, Any]
    """Fields to set (dotted paths nest)."""


class RenameStep(_Model):
    rename: dict[str, str]
    """Fields to rename: old -> new."""


class DropStep(_Model):
    drop: list[str]
    """Fields to remove."""


class MaskStep(_Model):
    mask: list[str]
    """Fields whose value is replaced by ``****``."""


class Route(_Model):
    field: str
    """Field whose value picks the topic."""
    topics: dict[str, TopicName]
    """Field value -> topic."""
    default: TopicName | None = None
    """Topic when no value matches (default: the processor's ``to``)."""


class RouteStep(_Model):
    route: Route
    """Pick the output topic by a field's value."""


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


class ProcessorSettings(_Model):
    """A processor: consume topics, transform each event, produce the results."""

    topics: list[TopicName] = Field(min_length=1)
    """Topics to consume."""
    to: TopicName | None = None
    """Topic the output events go to (unless an event or a route names another)."""
    function: str | None = None
    """A Python callable ``package.module:function`` taking and returning events."""
    transforms: list[Transform] | None = None
    """Declarative steps: filter, set, rename, drop, mask, route."""
    start: Start = "earliest"
    """Where a new processor (no committed offsets) starts."""
    dead_letter_topic: TopicName | None = None
    """Where events the processor fails on go (else the processor fails)."""
    retry: RetryPolicy = RetryPolicy()
    """Retries of a function raising ``RetriableError``: ``max_attempts`` calls per event,
    then the dead-letter topic (or FAILED)."""

    @field_validator("function")
    @classmethod
    def _function(cls, value: str | None) -> str | None:
        if value is not None and not _FUNCTION.match(value):
            raise ValueError(f"expected package.module:function (got {value!r})")
        return value

    @model_validator(mode="after")
    def _shape(self) -> ProcessorSettings:
        if (self.function is None) == (self.transforms is None):
            raise ValueError("give either function or transforms (exactly one)")
        routed = any(
            isinstance(step, RouteStep) and step.route.default for step in self.transforms or ()
        )
        if self.to is None and not routed:
            raise ValueError("'to' is required (the topic output events go to)")
        if self.to is not None and self.to in self.topics:
            raise ValueError(
                f"'to' ({self.to}) is also an input topic: it would read its own output"
            )
        return self


class Config(_Model):
    """The whole configuration file."""

    broker: BrokerSettings = BrokerSettings()
    """The broker: embedded (default) or an existing Kafka cluster (``bootstrap``)."""
    http: HttpSettings | None = None
    """The HTTP server (webhooks, admin API)."""
    runtime: RuntimeSettings = RuntimeSettings()
    """Runner settings."""
    topics: dict[TopicName, TopicSettings | None] = Field(default_factory=dict)
    """Topics to create at start."""
    sources: dict[str, SourceSettings] = Field(default_factory=dict)
    """Source connectors by name."""
    sinks: dict[str, SinkSettings] = Field(default_factory=dict)
    """Sink connectors by name."""
    processors: dict[str, ProcessorSettings] = Field(default_factory=dict)
    """Processors by name."""

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _file: str = PrivateAttr(default="<config>")

    @property
    def base_dir(self) -> Path:
        """The config file's folder: relative paths resolve against it."""
        return self._base_dir

    @property
    def file(self) -> str:
        """The config file as named on the command line."""
        return self._file

    def resolve(self, path: str | Path) -> Path:
        """``path`` made absolute against :attr:`base_dir`."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self._base_dir / candidate).resolve()

    def topic_settings(self, name: str) -> TopicSettings:
        """The declared settings of topic ``name`` (defaults if it is not declared)."""
        return self.topics.get(name) or TopicSettings()


def _member(kind: ConnectorKind, side: str) -> type[BaseModel]:
    common = SourceSettings if side == "source" else SinkSettings
    options: type[ConnectorOptions] = getattr(kind, f"{side}_options")
    safe = re.sub(r"\W", "_", kind.name)
    model = create_model(
        f"{safe}_{side}",
        __base__=(common, options),
        type=(Literal[kind.name], Field(description=f"Connector kind: {kind.name}.")),
    )
    model.__doc__ = kind.summary
    return model


def _union(registry: Registry, side: str) -> Any:
    members = [
        Annotated[_member(kind, side), Tag(kind.name)]
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
    return create_model(
        "Config",
        __base__=Config,
        sources=(dict[str, _union(registry, "source")], Field(default_factory=dict)),
        sinks=(dict[str, _union(registry, "sink")], Field(default_factory=dict)),
    )


def connector_options(entry: BaseModel, options: type[ConnectorOptions]) -> ConnectorOptions:
    """Extract the kind's own options from a validated source/sink entry."""
    given = {
        name: getattr(entry, name)
        for name in options.model_fields
        if name in entry.model_fields_set
    }
    return options.model_validate(given)


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


def _cross_checks(config: Config, document: Document) -> list[str]:
    problems = []
    seen: dict[str, str] = {}
    for section in ("sources", "sinks", "processors"):
        for name in getattr(config, section):
            path = (section, name)
            where = document.locations.where(path, prefer_key=True)
            if not _NAME.match(name):
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
