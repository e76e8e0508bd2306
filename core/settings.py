"""The config file's model tree: broker, http, runtime, topics, sources, sinks, processors.

``sources``/``sinks`` are typed here with the fields every entry has
(:class:`SourceSettings`, :class:`SinkSettings`); :mod:`backbone.schema` builds the
model whose entries also carry each kind's options. :mod:`backbone.config` loads a
file into it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from backbone.broker.limits import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_QUEUED_MAX_REQUEST_BYTES,
    DEFAULT_REQUEST_READ_TIMEOUT_S,
)
from backbone.client_settings import ConsumerSettings, ProducerSettings
from backbone.fields import FUNCTION, ConfigValue, HostPort, Start, TopicName, kafka_number, split
from backbone.security_settings import (
    ListenerSettings,
    SecuritySettings,
    ServerSasl,
    ServerTls,
    broker_security_options,
)
from backbone.steps import RouteStep, Transform
from backbone.types import ByteSize, Duration

__all__ = [
    "BrokerSettings",
    "Config",
    "EmbeddedBroker",
    "GatewaySettings",
    "HttpSettings",
    "InternalTopics",
    "ProcessorSettings",
    "RetryPolicy",
    "RuntimeSettings",
    "SinkSettings",
    "SourceSettings",
    "TopicSettings",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class EmbeddedBroker(_Model):
    """The broker running inside the gateway process."""

    listen: HostPort = "127.0.0.1:9092"
    """Address the embedded broker listens on (HOST:PORT; port 0 = any free port): one
    PLAINTEXT listener. Use ``listeners`` for several, or for TLS and SASL."""
    data_dir: str = "./data"
    """Folder of the broker's log, relative to the config file's folder."""
    advertised_listener: HostPort | None = None
    """HOST:PORT clients are told to connect to (default: the listen address)."""
    max_frame_bytes: Annotated[ByteSize, Field(ge=1024)] | None = None
    """Largest request accepted, e.g. 16MiB (Kafka's ``socket.request.max.bytes``); a
    bigger one closes its connection. Default: 16 x message.max.bytes + 64 KiB."""
    connections_max_idle: Annotated[Duration, Field(gt=0)] = 600.0
    """Close a connection with nothing to read or answer for this long, e.g. 10m
    (Kafka's ``connections.max.idle.ms``)."""
    request_read_timeout: Annotated[Duration, Field(gt=0)] = DEFAULT_REQUEST_READ_TIMEOUT_S
    """Close a connection whose request has not arrived whole this long after its first
    byte (slow or stalled senders)."""
    max_connections: int = Field(default=DEFAULT_MAX_CONNECTIONS, ge=1)
    """Open connections in all; more are refused (Kafka's ``max.connections``)."""
    max_connections_per_ip: int = Field(default=DEFAULT_MAX_CONNECTIONS_PER_IP, ge=1)
    """Open connections from one client address; more are refused
    (Kafka's ``max.connections.per.ip``)."""
    queued_max_request_bytes: Annotated[ByteSize, Field(ge=1024)] = DEFAULT_QUEUED_MAX_REQUEST_BYTES
    """Request bytes being read or queued across all connections, e.g. 100MiB; reading
    pauses at the limit (Kafka's ``queued.max.request.bytes``)."""
    listeners: list[ListenerSettings] | None = Field(default=None, min_length=1)
    """Listeners instead of ``listen``: each a name, HOST:PORT, protocol (PLAINTEXT,
    SSL, SASL_PLAINTEXT, SASL_SSL) and optional advertised HOST:PORT. The gateway's own
    clients use the first one (with ``broker.security``)."""
    tls: ServerTls | None = None
    """Certificate and key of the SSL/SASL_SSL listeners; client certificates."""
    sasl: ServerSasl | None = None
    """SASL mechanisms of the SASL listeners (default SCRAM-SHA-512 and SCRAM-SHA-256)."""
    super_users: list[str] = Field(default_factory=list)
    """Users (``admin``, or principals such as ``User:CN=ops``) the ACLs do not limit.
    ``User:ANONYMOUS`` is every client of a PLAINTEXT listener."""
    authorization: bool | None = None
    """Enforce ACLs: default on as soon as a listener authenticates its clients (SASL,
    or TLS with client_auth), off otherwise."""

    @model_validator(mode="after")
    def _limits_fit(self) -> EmbeddedBroker:
        frame = self.max_frame_bytes or DEFAULT_MAX_FRAME_BYTES
        if self.queued_max_request_bytes < frame:
            raise ValueError(
                f"queued_max_request_bytes ({self.queued_max_request_bytes}) must be at least "
                f"max_frame_bytes ({frame}): a request of the largest size must fit in it"
            )
        return self

    @model_validator(mode="after")
    def _listeners(self) -> EmbeddedBroker:
        if self.listeners is None:
            return self
        given = {"listen", "advertised_listener"} & self.model_fields_set
        if given:
            raise ValueError(f"give either listeners or {' and '.join(sorted(given))}, not both")
        names = [item.name for item in self.listeners]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"listener name {name!r} is used twice")
        for item in self.listeners:
            if item.protocol.endswith("SSL") and self.tls is None:
                raise ValueError(f"listener {item.name} ({item.protocol}) needs tls (cert and key)")
        return self

    def broker_options(self) -> dict[str, Any]:
        """The :class:`backbone.broker.BrokerConfig` fields of the listeners and security."""
        listeners = self.listeners or [
            ListenerSettings(
                name="PLAINTEXT", listen=self.listen, advertised=self.advertised_listener
            )
        ]
        sasl = self.sasl
        if sasl is None and any(item.protocol.startswith("SASL") for item in listeners):
            sasl = ServerSasl()
        return broker_security_options(
            listeners, self.tls, sasl, self.super_users, self.authorization
        )

    @property
    def first_protocol(self) -> str:
        """The protocol of the listener the gateway's own clients use."""
        return self.listeners[0].protocol if self.listeners else "PLAINTEXT"


class InternalTopics(_Model):
    """How the runtime creates the topics it makes itself: ``_backbone.positions`` and
    topics a connector names without declaring them under ``topics:`` (dead-letter
    topics, a processor's output)."""

    replication_factor: int = Field(default=-1, ge=-1)
    """Replicas per partition; -1 = the cluster's ``default.replication.factor``
    (CreateTopics v4+, KIP-464; the embedded broker makes one replica)."""
    min_insync_replicas: int | None = Field(default=None, ge=1)
    """``min.insync.replicas`` of those topics (default: the cluster's)."""

    def kafka_configs(self) -> dict[str, str]:
        """The topic configs these settings ask for."""
        if self.min_insync_replicas is None:
            return {}
        return {"min.insync.replicas": str(self.min_insync_replicas)}


class BrokerSettings(_Model):
    """Either an embedded broker (the default) or an existing Kafka cluster."""

    embedded: EmbeddedBroker | None = None
    """Run the embedded broker (default when ``bootstrap`` is not given)."""
    bootstrap: Annotated[list[HostPort] | None, BeforeValidator(split)] = Field(
        default=None, min_length=1
    )
    """Bootstrap servers of an existing Kafka cluster (a list, or one comma-separated
    string such as ``${KAFKA_BOOTSTRAP}``); no embedded broker is started."""
    idempotence: bool = True
    """Use an idempotent producer (no duplicates on produce retries). Turn off only for
    brokers that refuse InitProducerId (e.g. Tansu); delivery stays at-least-once."""
    internal_topics: InternalTopics = InternalTopics()
    """Replication of the topics the runtime creates itself (positions, dead letters)."""
    producer: ProducerSettings = ProducerSettings()
    """aiokafka producer settings (``linger_ms``, ``max_batch_size``, ``compression_type``...)
    of the gateway's producer, over Backbone's defaults."""
    consumer: ConsumerSettings = ConsumerSettings()
    """aiokafka consumer settings (``fetch_max_wait_ms``, ``max_partition_fetch_bytes``...)
    of every sink's and processor's consumer."""
    security: SecuritySettings = SecuritySettings()
    """How every Kafka client of the gateway connects: protocol, TLS, SASL (managed
    Kafka: SASL_SSL). With the embedded broker: the protocol of its first listener."""

    @model_validator(mode="after")
    def _one_of(self) -> BrokerSettings:
        if self.embedded is not None and self.bootstrap is not None:
            raise ValueError("give either embedded or bootstrap, not both")
        if self.bootstrap is None and self.embedded is None:
            object.__setattr__(self, "embedded", EmbeddedBroker())
        embedded = self.embedded
        if embedded is not None:
            first, mine = embedded.first_protocol, self.security.effective_protocol
            if first != mine:
                raise ValueError(
                    f"the gateway reaches its embedded broker through the first listener "
                    f"({first}) but security.protocol is {mine}: list a {mine} listener "
                    f"first, or set security to fit {first}"
                )
        return self


class GatewaySettings(_Model):
    """The gateway cluster: every ``backbone run`` with the same ``id`` on one Kafka
    cluster shares the sources (each runs in exactly one process)."""

    id: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    """Name of the gateway cluster (its Kafka group is ``_backbone.gateway.<id>``);
    default: the config file's name without its extension."""


class HttpSettings(_Model):
    """The gateway's one HTTP server (webhook sources, later the admin API and console)."""

    listen: HostPort = "127.0.0.1:8080"
    """Address the HTTP server listens on (HOST:PORT; port 0 = any free port)."""
    max_body: ByteSize = Field(default=1 << 20, ge=1)
    """Largest request body; a larger one is refused with 413 without reading it."""
    read_timeout: Duration = Field(default=30.0, gt=0)
    """Longest wait for each part of a request body (else 408)."""
    keep_alive: Duration = Field(default=5.0, gt=0)
    """How long an idle keep-alive connection stays open."""
    admin_token: SecretStr | None = None
    """Bearer token the admin API (``/connectors``, ``/topics``, ``/groups``, ``/metrics``)
    requires (``Authorization: Bearer <token>``); without one, the admin routes answer
    only requests from loopback. ``/health`` and ``/ready`` are always open."""


class RuntimeSettings(_Model):
    """How the runner behaves (all optional)."""

    grace_period: Duration = 10.0
    """On SIGINT/SIGTERM, how long in-flight work may drain before it is cancelled."""
    state_dir: str = ".backbone-state"
    """Folder for connectors' local state, relative to the config file's folder."""
    position_interval: Duration = 0.5
    """How often a source's acknowledged position is saved, and a sink's or processor's
    handled offsets are committed (at most)."""
    session_timeout: Duration = 10.0
    """Group session timeout of sinks, processors and the gateway cluster: a process
    that stops heartbeating this long loses its partitions and its sources, which
    another gateway process takes over."""
    heartbeat_interval: Duration = 1.0
    """Group heartbeat interval of sinks, processors and the gateway cluster."""
    max_batch: int = Field(default=500, ge=1)
    """Most records handed to one sink ``write`` call."""
    progress_interval: Duration = Field(default=30.0, ge=0)
    """How often each connector logs one INFO line with its rate, totals and lag (0: never)."""
    static_membership: bool = True
    """Sinks and processors join their groups with a ``group.instance.id`` (KIP-345), so
    a restarted gateway takes its partitions back at once. Turn off for brokers whose
    static membership is unreliable (Tansu 0.6 fences survivors' commits after a kill)."""


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
                converted[key] = kafka_number(key, item) if isinstance(key, str) else item
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
      there is none (or the sink's ``retries_exhausted`` is ``"fail"``, as for the
      ``http``, ``file`` and ``sql`` sinks), the connector stops in state FAILED with the
      error and commits nothing of them;
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
        if value is not None and not FUNCTION.match(value):
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
    gateway: GatewaySettings = GatewaySettings()
    """The gateway cluster this process joins (``gateway.id``)."""
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

    @property
    def gateway_id(self) -> str:
        """``gateway.id``, or the config file's name without its extension."""
        if self.gateway.id is not None:
            return self.gateway.id
        stem = Path(self._file).stem if self._file != "<config>" else "backbone"
        cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem)
        return cleaned or "backbone"

    def resolve(self, path: str | Path) -> Path:
        """``path`` made absolute against :attr:`base_dir`."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self._base_dir / candidate).resolve()

    def topic_settings(self, name: str) -> TopicSettings:
        """The declared settings of topic ``name`` (defaults if it is not declared)."""
        return self.topics.get(name) or TopicSettings()
