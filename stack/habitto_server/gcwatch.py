"""The garbage collector and long-lived sockets.

A full (generation 2) collection walks every tracked object; with 10,000 open sockets
that stalled every socket of the process for up to 1.2 s, several times a minute
(docs/benchmarks.md). `freeze_long_lived` moves objects that survived a few seconds
(sockets and their protocol state, mostly) out of the collector's reach with
`gc.freeze()`, so full collections only walk what is new. Frozen objects are still freed
by reference counting; only frozen *cyclic* garbage waits, until the periodic release
(`gc.unfreeze()`) hands everything back to the next full collection: one long pause per
release interval instead of several a minute. Long pauses are logged either way.
"""

import gc
import logging
import sys
import threading
import time

logger = logging.getLogger("habitto_server.gc")


def log_long_pauses(threshold_ms=50.0):
    started = [0.0]

    def on_collect(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
            return
        elapsed_ms = (time.perf_counter() - started[0]) * 1000
        if elapsed_ms >= threshold_ms and not sys.is_finalizing():
            logger.warning(
                "gc of generation %d paused the process %.0f ms (%d collected)",
                info["generation"], elapsed_ms, info["collected"],
            )

    gc.callbacks.append(on_collect)


def freeze_long_lived(every_seconds, release_every_seconds):
    """Start a daemon thread: gc.freeze() every `every_seconds`, gc.unfreeze() every
    `release_every_seconds`. Returns an Event that stops it; None when disabled (0)."""
    if every_seconds <= 0:
        return None
    stop = threading.Event()

    def run():
        released = time.monotonic()
        while not stop.wait(every_seconds):
            if time.monotonic() - released >= release_every_seconds:
                gc.unfreeze()
                released = time.monotonic()
            else:
                gc.freeze()

    threading.Thread(target=run, name="gc-freeze", daemon=True).start()
    return stop
