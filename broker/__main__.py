"""``python -m backbone.broker``: run the broker standalone until SIGINT/SIGTERM (exit 0)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .broker import parse_listener, serve


def _listener(value: str) -> str:
    try:
        parse_listener(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m backbone.broker``."""
    parser = argparse.ArgumentParser(
        prog="python -m backbone.broker",
        description="Run Backbone's Kafka-compatible broker in the foreground.",
    )
    parser.add_argument("--listen", type=_listener, default="127.0.0.1:9092", help="host:port")
    parser.add_argument("--data-dir", type=Path, default=Path("./data"), help="log directory")
    parser.add_argument(
        "--advertised-listener",
        type=_listener,
        default=None,
        help="host:port clients are told to connect to (default: the listen address)",
    )
    parser.add_argument(
        "--flush",
        choices=["always", "interval", "os"],
        default="always",
        help="when produced data is fsynced (acks=all waits for it with 'always')",
    )
    parser.add_argument("--flush-interval-ms", type=int, default=1000)
    parser.add_argument("--max-frame-bytes", type=int, default=100 * 1024 * 1024)
    parser.add_argument("--idle-timeout", type=float, default=600.0, help="seconds")
    parser.add_argument("--default-partitions", type=int, default=1)
    parser.add_argument(
        "--auto-create-topics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create unknown topics on first use (Metadata/Produce); with "
        "--no-auto-create-topics answer UNKNOWN_TOPIC_OR_PARTITION instead",
    )
    parser.add_argument("--node-id", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, configure logging to stderr, serve; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        logging.basicConfig(
            level=args.log_level.upper(),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    except ValueError as exc:
        print(f"error: --log-level: {exc}", file=sys.stderr)
        return 2
    try:
        serve(
            args.listen,
            args.data_dir,
            args.advertised_listener,
            flush=args.flush,
            flush_interval_ms=args.flush_interval_ms,
            max_frame_bytes=args.max_frame_bytes,
            idle_timeout_s=args.idle_timeout,
            default_partitions=args.default_partitions,
            auto_create_topics=args.auto_create_topics,
            node_id=args.node_id,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"error: cannot serve on {args.listen} with data in {args.data_dir}: {exc}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
