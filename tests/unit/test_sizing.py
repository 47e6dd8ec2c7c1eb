"""The sizing rules of flink_deploy/sizing.py hold for every profile we ship."""

from __future__ import annotations

from pathlib import Path

import pytest

from flink_deploy import sizing
from flink_deploy.autoscaler.policy import load_policy

DEFAULT_POLICY = Path(sizing.__file__).parent / "autoscaler" / "default-policy.yaml"


def test_a_bundle_of_the_largest_alerts_fits_the_runners_output_queue() -> None:
    # More messages than the queue holds and the bundle deadlocks (see the module doc).
    assert sizing.bundle_messages(sizing.MAX_ALERT_BYTES) < sizing.FN_INBOUND_QUEUE_MESSAGES
    lsst = 110_000
    assert sizing.bundle_messages(lsst) <= sizing.bundle_messages(sizing.MAX_ALERT_BYTES)


def test_bundle_messages_counts_whole_messages() -> None:
    # 128 elements of 2 MiB - 1 KiB each fill 128 messages of 2 MiB, plus the last one.
    assert (
        sizing.bundle_messages(sizing.FN_DATA_BUFFER_BYTES - sizing.RECORD_OVERHEAD_BYTES)
        == sizing.MAX_BUNDLE_SIZE + 1
    )


@pytest.mark.parametrize(
    "profile", load_policy(DEFAULT_POLICY.read_text()).profiles, ids=lambda p: p.name
)
def test_profile_memory_adds_up(profile: sizing.TaskManagerProfile) -> None:
    settings = profile.memory_settings()
    fixed = ("jvm-metaspace.size", "network.max", "task.off-heap.size")
    fixed_mib = sum(int(settings[f"taskmanager.memory.{k}"].removesuffix("m")) for k in fixed)
    # Flink takes 10% JVM overhead and 2 x 128 MiB framework memory; the rest is task heap.
    heap_mib = profile.memory_mib * 0.9 - fixed_mib - 256
    assert heap_mib >= 512, settings
    per_slot = sizing.MAX_BUNDLE_SIZE * sizing.MAX_ALERT_BYTES / (1 << 20)
    assert (
        int(settings["taskmanager.memory.task.off-heap.size"].removesuffix("m"))
        >= profile.slots * per_slot
    )


def test_profile_memory_parses_flinks_forms() -> None:
    assert sizing.TaskManagerProfile("p", 1, "3g").memory_mib == 3072
    assert sizing.TaskManagerProfile("p", 1, "2560 MB").memory_mib == 2560
    with pytest.raises(ValueError, match="bad process_memory"):
        _ = sizing.TaskManagerProfile("p", 1, "lots").memory_mib
