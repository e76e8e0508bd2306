"""The broker's security: SASL authentication, SCRAM users, ACLs and the authorizer.

A domain package below the handlers and the server (it knows nothing of the codec
or of sockets; the log and the group coordinator never import it):

- :mod:`.session` — the SASL state of one connection, as a transition table;
- :mod:`.scram`, :mod:`.mechanisms` — SCRAM-SHA-256/512, PLAIN, OAUTHBEARER (sans-I/O);
- :mod:`.users` — salted SCRAM credentials in ``<data_dir>/security/users.json``;
- :mod:`.acls`, :mod:`.authorizer` — Kafka-model ACLs in
  ``<data_dir>/security/acls.json`` and the decisions made from them;
- :mod:`.failures` — delays and log lines for failed authentications;
- :mod:`.tls` — the listeners' TLS context and principals from client certificates;
- :mod:`.service` — :class:`Security`, all of it for one broker.
"""

from .acls import (
    AclBinding,
    AclFilter,
    AclOperation,
    AclPermission,
    AclStore,
    PatternType,
    ResourceType,
)
from .authorizer import ANONYMOUS, Authorizer, principal_name
from .errors import (
    ClusterAuthorizationFailed,
    GroupAuthorizationFailed,
    SaslAuthenticationFailed,
    TopicAuthorizationFailed,
)
from .scram import ScramCredential
from .service import Security
from .session import SaslSession, SaslState
from .users import UserStore

__all__ = [
    "ANONYMOUS",
    "AclBinding",
    "AclFilter",
    "AclOperation",
    "AclPermission",
    "AclStore",
    "Authorizer",
    "ClusterAuthorizationFailed",
    "GroupAuthorizationFailed",
    "PatternType",
    "ResourceType",
    "SaslAuthenticationFailed",
    "SaslSession",
    "SaslState",
    "ScramCredential",
    "Security",
    "TopicAuthorizationFailed",
    "UserStore",
    "principal_name",
]
