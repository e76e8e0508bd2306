"""ACLs in Kafka's model, and their durable store ``<data_dir>/security/acls.json``.

An ACL (:class:`AclBinding`) says: *principal* from *host* is ALLOWed or DENYed
*operation* on the resources matched by a *resource pattern* (type, name, and
whether the name is LITERAL — ``*`` = every resource of the type — or a PREFIXED).
The enums carry Kafka's wire codes, so CreateAcls/DescribeAcls/DeleteAcls use them
as they are. :class:`AclFilter` is Kafka's ``AclBindingFilter`` (ANY matches
everything; pattern type MATCH finds every ACL that applies to one resource name).

The store keeps the bindings in one JSON file, replaced atomically and fsynced on
every change before the change is answered::

    {"version": 1, "acls": [{"resource_type": "TOPIC", "name": "orders",
       "pattern_type": "LITERAL", "principal": "User:alice", "host": "*",
       "operation": "READ", "permission": "ALLOW"}, ...]}
"""

from __future__ import annotations

import enum
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backbone.durable import write_file_atomically

from ..errors import InvalidRequest

__all__ = [
    "ACLS_FILE",
    "CLUSTER_NAME",
    "AclBinding",
    "AclFilter",
    "AclOperation",
    "AclPermission",
    "AclStore",
    "PatternType",
    "ResourceType",
]

ACLS_FILE = Path("security") / "acls.json"
CLUSTER_NAME = "kafka-cluster"
"""The one name of the CLUSTER resource, as in Kafka."""


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class AclPermission(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


def _enum(cls: type[enum.IntEnum], value: int, what: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise InvalidRequest(f"unknown {what} code {value}") from None


@dataclass(frozen=True, slots=True)
class AclBinding:
    """One ACL (see the module docstring)."""

    resource_type: ResourceType
    name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: AclOperation
    permission: AclPermission

    @classmethod
    def checked(
        cls,
        resource_type: int,
        name: str,
        pattern_type: int,
        principal: str,
        host: str,
        operation: int,
        permission: int,
    ) -> AclBinding:
        """A binding from wire values; raises InvalidRequest for one Kafka refuses too."""
        binding = cls(
            _enum(ResourceType, resource_type, "resource type"),
            name,
            _enum(PatternType, pattern_type, "pattern type"),
            principal,
            host,
            _enum(AclOperation, operation, "operation"),
            _enum(AclPermission, permission, "permission type"),
        )
        if binding.resource_type in (ResourceType.ANY, ResourceType.UNKNOWN):
            raise InvalidRequest("an ACL needs a resource type (not ANY)")
        if binding.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
            raise InvalidRequest("an ACL's pattern type must be LITERAL or PREFIXED")
        if binding.operation in (AclOperation.ANY, AclOperation.UNKNOWN):
            raise InvalidRequest("an ACL needs an operation (not ANY)")
        if binding.permission not in (AclPermission.ALLOW, AclPermission.DENY):
            raise InvalidRequest("an ACL's permission type must be ALLOW or DENY")
        if not name:
            raise InvalidRequest("an ACL needs a resource name")
        if binding.resource_type == ResourceType.CLUSTER and name != CLUSTER_NAME:
            raise InvalidRequest(f"the cluster resource is named {CLUSTER_NAME!r} (got {name!r})")
        kind, sep, who = principal.partition(":")
        if not sep or not kind or not who:
            raise InvalidRequest(f"principal {principal!r} must be written TYPE:NAME (User:alice)")
        if not host:
            raise InvalidRequest("an ACL needs a host ('*' for any)")
        return binding

    def to_json(self) -> dict[str, str]:
        return {
            "resource_type": self.resource_type.name,
            "name": self.name,
            "pattern_type": self.pattern_type.name,
            "principal": self.principal,
            "host": self.host,
            "operation": self.operation.name,
            "permission": self.permission.name,
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> AclBinding:
        return cls(
            ResourceType[data["resource_type"]],
            data["name"],
            PatternType[data["pattern_type"]],
            data["principal"],
            data["host"],
            AclOperation[data["operation"]],
            AclPermission[data["permission"]],
        )


@dataclass(frozen=True, slots=True)
class AclFilter:
    """Kafka's AclBindingFilter: None and ANY match everything."""

    resource_type: ResourceType = ResourceType.ANY
    name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: AclOperation = AclOperation.ANY
    permission: AclPermission = AclPermission.ANY

    @classmethod
    def checked(
        cls,
        resource_type: int,
        name: str | None,
        pattern_type: int,
        principal: str | None,
        host: str | None,
        operation: int,
        permission: int,
    ) -> AclFilter:
        """A filter from wire values; raises InvalidRequest for UNKNOWN codes."""
        made = cls(
            _enum(ResourceType, resource_type, "resource type"),
            name,
            _enum(PatternType, pattern_type, "pattern type"),
            principal,
            host,
            _enum(AclOperation, operation, "operation"),
            _enum(AclPermission, permission, "permission type"),
        )
        for value in (made.resource_type, made.pattern_type, made.operation, made.permission):
            if value.name == "UNKNOWN":
                raise InvalidRequest(f"an ACL filter cannot match {type(value).__name__} UNKNOWN")
        return made

    def matches(self, acl: AclBinding) -> bool:
        if self.resource_type not in (ResourceType.ANY, acl.resource_type):
            return False
        if self.pattern_type not in (PatternType.ANY, PatternType.MATCH, acl.pattern_type):
            return False
        if self.name is not None:
            if self.pattern_type in (PatternType.ANY, acl.pattern_type):
                if self.name != acl.name:
                    return False
            elif acl.pattern_type == PatternType.LITERAL:  # MATCH
                if acl.name not in (self.name, "*"):
                    return False
            elif not self.name.startswith(acl.name):  # MATCH against PREFIXED
                return False
        if self.principal is not None and self.principal != acl.principal:
            return False
        if self.host is not None and self.host != acl.host:
            return False
        if self.operation not in (AclOperation.ANY, acl.operation):
            return False
        return self.permission in (AclPermission.ANY, acl.permission)


class AclStore:
    """The ACLs of a broker, loaded from and saved to ``path`` (see the module docstring).

    ``acls`` is an immutable tuple, replaced (a new object) by every change, which is
    how the authorizer knows to drop its cache. Thread-safe: changes run in a worker
    thread (they fsync).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._acls: tuple[AclBinding, ...] = ()
        if self.path.exists():
            data = json.loads(self.path.read_text())
            self._acls = tuple(AclBinding.from_json(entry) for entry in data.get("acls", []))

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> AclStore:
        return cls(Path(data_dir) / ACLS_FILE)

    @property
    def acls(self) -> tuple[AclBinding, ...]:
        return self._acls

    def matching(self, acl_filter: AclFilter) -> list[AclBinding]:
        return [acl for acl in self._acls if acl_filter.matches(acl)]

    def add(self, bindings: Iterable[AclBinding]) -> None:
        """Add bindings (one already there stays once) and save."""
        with self._lock:
            acls = list(self._acls)
            for binding in bindings:
                if binding not in acls:
                    acls.append(binding)
            self._replace(tuple(acls))

    def remove(self, filters: Iterable[AclFilter]) -> list[list[AclBinding]]:
        """Delete what each filter matches and save; returns the deleted bindings per filter."""
        with self._lock:
            removed: list[list[AclBinding]] = []
            kept = list(self._acls)
            for acl_filter in filters:
                gone = [acl for acl in self._acls if acl_filter.matches(acl)]
                removed.append(gone)
                kept = [acl for acl in kept if acl not in gone]
            if len(kept) != len(self._acls):
                self._replace(tuple(kept))
            return removed

    def _replace(self, acls: tuple[AclBinding, ...]) -> None:
        data = {"version": 1, "acls": [acl.to_json() for acl in acls]}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file_atomically(self.path, (json.dumps(data, indent=1) + "\n").encode())
        os.chmod(self.path, 0o600)
        self._acls = acls
