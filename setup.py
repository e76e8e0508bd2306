"""Packaging shim: list every package under the three mapped folders, and build the
broker's optional C accelerator.

pyproject.toml maps core/ -> backbone, broker/ -> backbone.broker and
connectors/ -> backbone.connectors; this computes the sub-package list so a new
folder with an ``__init__.py`` is installed without editing the metadata.

``backbone.broker.log._records`` (broker/log/_records.c) walks the records of a
produced batch in C. It is optional: without a compiler the build leaves it out and
the broker uses the same walk in pure Python (``backbone.broker.log.records``).
"""

from pathlib import Path

from setuptools import Extension, setup

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


RECORDS_EXTENSION = Extension(
    "backbone.broker.log._records",
    sources=["broker/log/_records.c"],
    optional=True,  # a failed build installs the package without it (pure-Python walk)
    extra_compile_args=["-O2"],
)

setup(packages=_packages(), ext_modules=[RECORDS_EXTENSION])
