"""The security errors of the broker, each with its Kafka error code.

Subclasses of :class:`~backbone.broker.errors.BrokerError`, so the handlers map them
to ``error_code`` like every other domain error::

    BrokerError
    ├── TopicAuthorizationFailed (29)     ├── SaslAuthenticationFailed (58)
    ├── GroupAuthorizationFailed (30)     ├── ResourceNotFound (91)
    ├── ClusterAuthorizationFailed (31)   ├── DuplicateResource (92)
    ├── UnsupportedSaslMechanism (33)     └── UnacceptableCredential (93)
    ├── IllegalSaslState (34)
    └── SecurityDisabled (54)
"""

from __future__ import annotations

from ..errors import BrokerError

__all__ = [
    "ClusterAuthorizationFailed",
    "DuplicateResource",
    "GroupAuthorizationFailed",
    "IllegalSaslState",
    "ResourceNotFound",
    "SaslAuthenticationFailed",
    "SecurityDisabled",
    "TopicAuthorizationFailed",
    "UnacceptableCredential",
    "UnsupportedSaslMechanism",
]


class TopicAuthorizationFailed(BrokerError):
    """Topic authorization failed."""

    code = 29


class GroupAuthorizationFailed(BrokerError):
    """Group authorization failed."""

    code = 30


class ClusterAuthorizationFailed(BrokerError):
    """Cluster authorization failed."""

    code = 31


class UnsupportedSaslMechanism(BrokerError):
    """The broker does not support the requested SASL mechanism."""

    code = 33


class IllegalSaslState(BrokerError):
    """Request is not valid given the current SASL state."""

    code = 34


class SecurityDisabled(BrokerError):
    """Security features are disabled."""

    code = 54


class SaslAuthenticationFailed(BrokerError):
    """SASL Authentication failed."""

    code = 58


class ResourceNotFound(BrokerError):
    """A request illegally referred to a resource that does not exist."""

    code = 91


class DuplicateResource(BrokerError):
    """A request illegally referred to the same resource twice."""

    code = 92


class UnacceptableCredential(BrokerError):
    """Requested credential would not meet criteria for acceptability."""

    code = 93
