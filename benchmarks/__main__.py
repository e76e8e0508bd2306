"""``python -m benchmarks``: run every benchmark suite present, one after the other.

Who calls what: ``make bench`` runs this. The broker suite always runs and
gets the command-line arguments (``--quick``, ``--only``, ``--records`` ...;
see ``python -m benchmarks.broker --help``). Every other suite in
:data:`SUITES` runs when its module exists and exposes ``main``; it is called
with ``["--quick"]`` when ``--quick`` was given, else with no arguments, and
``--suite NAME`` runs one suite only. The exit code is 1 if any suite failed.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Sequence

#: Suites in run order: module name under ``benchmarks``.
SUITES = ("broker", "sql", "failover", "http", "files")


def _split(argv: list[str]) -> tuple[str | None, list[str]]:
    suite = None
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--suite":
            suite = next(args, None)
        elif arg.startswith("--suite="):
            suite = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return suite, rest


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suites; return the process exit code."""
    suite, rest = _split(list(sys.argv[1:] if argv is None else argv))
    if suite is not None and suite not in SUITES:
        print(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}", file=sys.stderr)
        return 2
    if "-h" in rest or "--help" in rest:
        print(__doc__)
        from benchmarks import broker

        broker.parse_args(["--help"])  # prints the broker suite's options and exits
    status = 0
    for name in SUITES:
        if suite not in (None, name):
            continue
        module_name = f"benchmarks.{name}"
        if name != "broker" and importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        entry = getattr(module, "main", None)
        if entry is None:
            continue
        quick = ["--quick"] if "--quick" in rest else []
        args = rest if name == "broker" else quick
        print(f"\n=== benchmarks.{name} ===", flush=True)
        try:
            code = entry(args) if inspect.signature(entry).parameters else entry()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:
            traceback.print_exc()
            code = 1
        status = status or (code or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
