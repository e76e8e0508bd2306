"""Packaging shim: list every package under the three mapped folders.

pyproject.toml maps core/ -> backbone, broker/ -> backbone.broker and
connectors/ -> backbone.connectors; this computes the sub-package list so a new
folder with an ``__init__.py`` is installed without editing the metadata.
"""

from pathlib import Path

from setuptools import setup

ROOTS = {"backbone": "core", "backbone.broker": "broker", "backbone.connectors": "connectors"}


def _packages() -> list[str]:
    here = Path(__file__).parent
    found: list[str] = []
    for name, folder in ROOTS.items():
        base = here / folder
        for init in sorted(base.rglob("__init__.py")):
            rel = init.parent.relative_to(base)
            found.append(".".join([name, *rel.parts]) if rel.parts else name)
    return found


setup(packages=_packages())
