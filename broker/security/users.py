"""The SCRAM users of a broker: salted credentials in ``<data_dir>/security/users.json``.

One file, replaced atomically and fsynced on every change (``backbone.durable``), so a
change that was answered survives a crash. Its shape::

    {"version": 1,
     "users": {"alice": {"SCRAM-SHA-512": {"salt": "<b64>", "iterations": 4096,
                                           "stored_key": "<b64>", "server_key": "<b64>"}}}}

Only StoredKey and ServerKey are kept (see :mod:`.scram`): neither the password nor
the salted password can be read back from the file, and SASL/PLAIN checks a password
by deriving it again with a stored salt. Changed by AlterUserScramCredentials (and
so by ``backbone users add|delete``), read by every SCRAM and PLAIN authentication.
The methods are thread-safe: writes run in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from backbone.durable import write_file_atomically

from .errors import ResourceNotFound
from .scram import SCRAM_MECHANISMS, ScramCredential

__all__ = ["USERS_FILE", "UserStore"]

USERS_FILE = Path("security") / "users.json"


class UserStore:
    """Users and their salted SCRAM credentials, loaded from and saved to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._users: dict[str, dict[str, ScramCredential]] = {}
        if self.path.exists():
            self._users = self._parse(json.loads(self.path.read_text()))

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> UserStore:
        return cls(Path(data_dir) / USERS_FILE)

    @staticmethod
    def _parse(data: dict[str, Any]) -> dict[str, dict[str, ScramCredential]]:
        users: dict[str, dict[str, ScramCredential]] = {}
        for name, mechanisms in data.get("users", {}).items():
            users[name] = {
                mechanism: ScramCredential.from_json(mechanism, entry)
                for mechanism, entry in mechanisms.items()
                if mechanism in SCRAM_MECHANISMS
            }
        return users

    def credential(self, user: str, mechanism: str) -> ScramCredential | None:
        """The credential of ``user`` for ``mechanism`` (None when there is none)."""
        return self._users.get(user, {}).get(mechanism)

    def credentials(self, user: str) -> list[ScramCredential]:
        """Every credential of ``user``, SCRAM-SHA-512 first."""
        found = self._users.get(user, {})
        return [found[m] for m in sorted(found, reverse=True)]

    def users(self) -> dict[str, list[ScramCredential]]:
        """User name -> credentials, sorted by name."""
        return {name: self.credentials(name) for name in sorted(self._users)}

    def check_password(self, user: str, password: str) -> bool:
        """SASL/PLAIN: whether ``password`` matches one of the user's stored credentials.

        Costs one PBKDF2 derivation (run it in a worker thread)."""
        credentials = self.credentials(user)
        return bool(credentials) and credentials[0].check_password(password)

    def apply(
        self,
        upsertions: Iterable[tuple[str, ScramCredential]] = (),
        deletions: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Add or replace credentials and delete ``(user, mechanism)`` pairs, then save
        (fsynced). Raises ResourceNotFound (saving nothing) for a deletion of a credential
        that does not exist."""
        with self._lock:
            users = {name: dict(found) for name, found in self._users.items()}
            for name, mechanism in deletions:
                if mechanism not in users.get(name, {}):
                    raise ResourceNotFound(f"user {name!r} has no {mechanism} credential")
                del users[name][mechanism]
                if not users[name]:
                    del users[name]
            for name, credential in upsertions:
                users.setdefault(name, {})[credential.mechanism] = credential
            self._save(users)
            self._users = users

    def _save(self, users: dict[str, dict[str, ScramCredential]]) -> None:
        data = {
            "version": 1,
            "users": {
                name: {m: c.to_json() for m, c in sorted(found.items())}
                for name, found in sorted(users.items())
            },
        }
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file_atomically(self.path, (json.dumps(data, indent=1) + "\n").encode())
        os.chmod(self.path, 0o600)  # stored keys allow offline guessing: owner only
