"""Api key -> message class mappings over the generated modules, imported on first use.

The server looks up ``REQUESTS[api_key]`` once per request; importing all 54
generated modules up front would cost every process that merely imports the
broker about half a second, so each module is imported the first time one of
its classes is asked for (then it is in ``sys.modules``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Mapping

from . import _generated
from ._types import Message

__all__ = ["MessageRegistry", "load_message"]


def load_message(name: str) -> type[Message]:
    """The generated class ``name`` (e.g. "ProduceRequest"); KeyError if there is none."""
    fullname = f"{_generated.__name__}.{_generated.MODULES[name]}"
    module = sys.modules.get(fullname) or importlib.import_module(fullname)
    cls = getattr(module, name)
    if not (isinstance(cls, type) and issubclass(cls, Message)):
        raise KeyError(name)
    return cls


class MessageRegistry(Mapping[int, type[Message]]):
    """Read-only ``api key -> message class`` mapping; classes load on first lookup."""

    __slots__ = ("_names",)

    def __init__(self, names: Mapping[int, str]) -> None:
        self._names = names

    def __getitem__(self, api_key: int) -> type[Message]:
        return load_message(self._names[api_key])

    def __contains__(self, api_key: object) -> bool:
        return api_key in self._names

    def __iter__(self) -> Iterator[int]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"MessageRegistry({dict(self._names)!r})"
