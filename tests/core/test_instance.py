"""This process's stable id for static group membership (``backbone.instance``)."""

from __future__ import annotations

import re
from pathlib import Path

from backbone.instance import instance_slot


def test_processes_sharing_a_folder_get_different_slots_and_a_freed_slot_is_reused(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    with instance_slot(state) as first, instance_slot(state) as second:
        assert re.fullmatch(r"[A-Za-z0-9._-]+-[0-9a-f]{8}-0", first)
        assert second == first[:-1] + "1"
        with instance_slot(state) as third:
            assert third.endswith("-2")
    with instance_slot(state) as again:  # all released (as by a dead process): slot 0
        assert again == first
    with instance_slot(tmp_path / "other") as elsewhere:  # another folder, another id
        assert elsewhere != first and elsewhere.endswith("-0")
    assert sorted(p.name for p in (state / "instances").iterdir()) == [
        "slot-0.lock",
        "slot-1.lock",
        "slot-2.lock",
    ]
