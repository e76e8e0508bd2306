"""``broker.embedded`` connection limits in the YAML reach the broker the gateway runs."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from backbone.testing import FAST_RUNTIME, running
from tests.servers import free_port

pytestmark = pytest.mark.timeout(90)


async def test_connection_limits_from_the_yaml(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""\
broker:
  embedded:
    listen: 127.0.0.1:{port}
    data_dir: {tmp_path / "data"}
    max_frame_bytes: 4MiB
    connections_max_idle: 2m
    request_read_timeout: 500ms
    max_connections: 300
    max_connections_per_ip: 60
    queued_max_request_bytes: 32MiB
"""
        + FAST_RUNTIME
    )
    with caplog.at_level(logging.INFO, logger="backbone.broker.server"):
        async with running(config):
            # a request that never arrives whole is dropped after request_read_timeout
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x00\x00")
            async with asyncio.timeout(20):
                assert await reader.read(1) == b""
            writer.close()
    assert (
        f"listening on 127.0.0.1:{port}, listener PLAINTEXT (PLAINTEXT) "
        "(max_frame_bytes 4194304, max_connections 300, "
        "max_connections_per_ip 60, idle_timeout 120s, request_read_timeout 0.5s, "
        "queued_max_request_bytes 33554432)"
    ) in caplog.messages
    assert any("did not arrive within 0.5s of its first byte" in m for m in caplog.messages)
