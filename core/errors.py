"""Errors of the gateway (``backbone``).

The tree::

    BackboneError                  anything Backbone raises on purpose
    ├── ConfigError                the YAML file is wrong (carries every problem at once)
    ├── ContractError              a connector broke the connector contract (a bug in the
    │                              connector, not in the data): it stops in state FAILED
    └── ConnectorError             raised by a connector; the runner decides what follows
        ├── RetriableError         transient (network, 5xx, lock timeout): back off and retry,
        │                          honouring ``retry_after`` seconds when given
        ├── DataError              this record is bad (parse error, constraint violation):
        │                          it goes to the dead-letter topic, the pipeline goes on
        └── FatalError             the connector cannot go on (auth refused, table missing):
                                   it stops in state FAILED and reports the message

Only the CLI turns these into exit codes (1 runtime, 2 config/usage).
"""

from __future__ import annotations

__all__ = [
    "BackboneError",
    "ConfigError",
    "ConnectorError",
    "ContractError",
    "DataError",
    "FatalError",
    "RetriableError",
]


class BackboneError(Exception):
    """Base class of every error Backbone raises on purpose."""


class ConfigError(BackboneError):
    """A configuration file is invalid; ``problems`` lists every error, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ContractError(BackboneError):
    """A connector broke a rule of the connector contract (:mod:`backbone.sdk`).

    Raised by the runtime (and by :mod:`backbone.testing`), never by a connector: the
    message names the connector, the rule and the fix. The connector stops in state
    FAILED; nothing it returned in the offending ``read()`` is produced, so nothing
    is lost (a restart reads it again).
    """


class ConnectorError(BackboneError):
    """Raised by a connector; its subclass tells the runner what to do.

    ``headers`` (name, bytes) are added to the dead-letter record when the error
    sends a record there (e.g. an HTTP sink's ``backbone.error.http.status``).
    """

    def __init__(self, message: str = "", *, headers: list[tuple[str, bytes]] | None = None):
        super().__init__(message)
        self.headers = list(headers or [])


class RetriableError(ConnectorError):
    """A transient failure: the runner backs off (exponential, jitter) and retries.

    ``retry_after`` (seconds), when given, is the least the runner waits before the
    next attempt (an HTTP ``Retry-After``, a lock timeout).
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        super().__init__(message, headers=headers)
        self.retry_after = retry_after


class DataError(ConnectorError):
    """The record (or one record of the batch) is bad and retrying will not help.

    A sink's ``write`` is all-or-nothing: raising ``DataError`` means nothing of the
    batch was durably written. The runner then writes the batch one record at a time
    so that only the bad records go to the dead-letter topic.
    """


class FatalError(ConnectorError):
    """The connector cannot go on; it stops in state FAILED with this message."""
