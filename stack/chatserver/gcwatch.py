"""Garbage-collector pauses stall every socket of the process at once, so long ones are
logged for whoever reads the latency figures."""

import gc
import logging
import sys
import time

logger = logging.getLogger("chatserver.gc")


def install(threshold_ms=50.0):
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
