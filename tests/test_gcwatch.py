"""The server's garbage-collector policy: long-lived objects get frozen, then released."""

import gc
import time

from habitto_server import gcwatch


def test_freeze_then_release_cycle():
    """Objects are frozen after the interval and handed back at the release interval."""
    gc.unfreeze()
    survivors = [[n] for n in range(10_000)]  # long-lived, tracked objects
    stop = gcwatch.freeze_long_lived(every_seconds=0.2, release_every_seconds=0.7)
    try:
        deadline = time.monotonic() + 3
        while gc.get_freeze_count() < len(survivors) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gc.get_freeze_count() >= len(survivors)
        while gc.get_freeze_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gc.get_freeze_count() == 0  # released: the next full collection sees them
    finally:
        stop.set()
        gc.unfreeze()


def test_disabled_with_zero():
    """GC_FREEZE_SECONDS=0 starts nothing."""
    assert gcwatch.freeze_long_lived(0, 3600) is None
