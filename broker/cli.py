"""The broker's one command line: ``python -m backbone.broker`` and ``backbone broker``.

Both run :func:`main` with the same flags (``backbone broker`` hands its arguments
over untouched), so they cannot drift apart. Standard library only (argparse): the
broker stays usable without the gateway's typer and pydantic.

Exit codes: 0 after SIGINT/SIGTERM (a clean stop), 1 when the broker cannot run
(port taken, data folder unusable), 2 for a usage error. Errors are one line on
stderr (``error: --listen: expected HOST:PORT ...``); ``--debug`` adds tracebacks
and debug logs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from .broker import serve
from .config import FLUSH_POLICIES, BrokerConfig, parse_host_port
from .logging_setup import LOG_FORMATS, LOG_LEVELS, configure_logging, parse_log_level

__all__ = ["add_logging_arguments", "build_parser", "main"]

logger = logging.getLogger("backbone.broker.cli")

_T = TypeVar("_T")
_DEFAULTS = BrokerConfig(data_dir=Path("./data"))


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, ``error: --flag: what is wrong`` (exit 2)."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("argument "):
            message = message[len("argument ") :]
        self.exit(2, f"error: {message}\n")


def _checked(parse: Callable[[str], object], convert: Callable[[str], _T]) -> Callable[[str], _T]:
    """An argparse ``type`` that reports ``parse``'s ValueError message as is."""

    def check(value: str) -> _T:
        try:
            parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return convert(value)

    return check


def _flush(value: str) -> str:
    if value not in FLUSH_POLICIES:
        raise ValueError(f"must be 'always', 'interval' or 'os' (got {value!r})")
    return value


def _at_least(minimum: int) -> Callable[[str], int]:
    def number(value: str) -> int:
        try:
            parsed = int(value)
        except ValueError:
            raise ValueError(f"expected a whole number (got {value!r})") from None
        if parsed < minimum:
            raise ValueError(f"must be at least {minimum} (got {parsed})")
        return parsed

    return number


def _seconds(value: str) -> float:
    try:
        parsed = float(value)
    except ValueError:
        raise ValueError(f"expected a number of seconds (got {value!r})") from None
    if parsed <= 0:
        raise ValueError(f"must be more than 0 seconds (got {value!r})")
    return parsed


def build_parser(prog: str = "python -m backbone.broker") -> argparse.ArgumentParser:
    """The broker's command line (``prog`` is the name shown in ``--help``)."""
    parser = _Parser(
        prog=prog,
        description="Run Backbone's Kafka-compatible broker in the foreground until "
        "SIGINT/SIGTERM.",
    )
    listener = _checked(parse_host_port, str)
    parser.add_argument(
        "--listen",
        type=listener,
        default="127.0.0.1:9092",
        metavar="HOST:PORT",
        help="the address to listen on (127.0.0.1:9092; port 0 = any free port)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("./data"),
        metavar="DIR",
        help="folder of the log (./data)",
    )
    parser.add_argument(
        "--advertised-listener",
        type=listener,
        default=None,
        metavar="HOST:PORT",
        help="the address clients are told to connect to (default: the listen address)",
    )
    parser.add_argument(
        "--flush",
        type=_checked(_flush, str),
        default=_DEFAULTS.flush,
        metavar="{" + ",".join(FLUSH_POLICIES) + "}",
        help="when produced data is fsynced: always (acks=all is answered after fsync), "
        "interval (every --flush-interval-ms), os (the page cache decides)",
    )
    parser.add_argument(
        "--flush-interval-ms",
        type=_checked(_at_least(1), int),
        default=_DEFAULTS.flush_interval_ms,
        help="fsync period with --flush interval (%(default)s)",
    )
    parser.add_argument(
        "--auto-create-topics",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULTS.auto_create_topics,
        help="create unknown topics on first use (Metadata/Produce), like Kafka; with "
        "--no-auto-create-topics they get UNKNOWN_TOPIC_OR_PARTITION",
    )
    parser.add_argument(
        "--default-partitions",
        type=_checked(_at_least(1), int),
        default=_DEFAULTS.default_partitions,
        help="partitions of auto-created topics (%(default)s)",
    )
    parser.add_argument(
        "--max-frame-bytes",
        type=_checked(_at_least(1024), int),
        default=None,
        metavar="BYTES",
        help="largest request accepted (Kafka's socket.request.max.bytes); a bigger one "
        "closes its connection (16 x message.max.bytes + 64 KiB = "
        f"{_DEFAULTS.frame_limit})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_checked(_seconds, float),
        default=_DEFAULTS.idle_timeout_s,
        metavar="SECONDS",
        help="close connections with nothing to read or answer for this long "
        "(connections.max.idle.ms; %(default)s)",
    )
    parser.add_argument(
        "--request-read-timeout",
        type=_checked(_seconds, float),
        default=_DEFAULTS.request_read_timeout_s,
        metavar="SECONDS",
        help="close a connection whose request has not arrived whole this long after its "
        "first byte (%(default)s)",
    )
    parser.add_argument(
        "--max-connections",
        type=_checked(_at_least(1), int),
        default=_DEFAULTS.max_connections,
        metavar="N",
        help="open connections in all; more are refused (%(default)s)",
    )
    parser.add_argument(
        "--max-connections-per-ip",
        type=_checked(_at_least(1), int),
        default=_DEFAULTS.max_connections_per_ip,
        metavar="N",
        help="open connections from one client address; more are refused (%(default)s)",
    )
    parser.add_argument(
        "--queued-max-request-bytes",
        type=_checked(_at_least(1024), int),
        default=_DEFAULTS.queued_max_request_bytes,
        metavar="BYTES",
        help="request bytes being read or queued across all connections; reading pauses "
        "at the limit (%(default)s)",
    )
    parser.add_argument(
        "--node-id",
        type=_checked(_at_least(0), int),
        default=_DEFAULTS.node_id,
        help="the broker id told to clients (%(default)s)",
    )
    add_logging_arguments(parser)
    return parser


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """``--log-level``, ``--log-format`` and ``--debug``."""
    parser.add_argument(
        "--log-level",
        type=_checked(parse_log_level, str.upper),
        default="INFO",
        metavar="{" + ",".join(n.lower() for n in LOG_LEVELS) + "}",
        help="least severe log records written to stderr (info)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text lines, or one JSON object per line for log shippers (text)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="debug logs and tracebacks (= --log-level debug)"
    )


def main(argv: Sequence[str] | None = None, prog: str = "python -m backbone.broker") -> int:
    """Parse ``argv``, configure logging, serve until SIGINT/SIGTERM; returns the exit code."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    configure_logging("DEBUG" if args.debug else args.log_level, args.log_format)
    try:
        serve(
            args.listen,
            args.data_dir,
            args.advertised_listener,
            flush=args.flush,
            flush_interval_ms=args.flush_interval_ms,
            auto_create_topics=args.auto_create_topics,
            default_partitions=args.default_partitions,
            max_frame_bytes=args.max_frame_bytes,
            idle_timeout_s=args.idle_timeout,
            request_read_timeout_s=args.request_read_timeout,
            max_connections=args.max_connections,
            max_connections_per_ip=args.max_connections_per_ip,
            queued_max_request_bytes=args.queued_max_request_bytes,
            node_id=args.node_id,
        )
    except KeyboardInterrupt:
        return 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug:
            logger.exception("the broker failed")
        else:
            print(
                f"error: cannot serve on {args.listen} with data in {args.data_dir}: {exc}",
                file=sys.stderr,
            )
        return 1
    return 0
