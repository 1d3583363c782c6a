"""Group commit for socket sends.

Sends from every socket of the process queue here; while one batch is being written,
the next ones accumulate, and each batch is stored by `do_send_messages` in a single
transaction on one dedicated writer thread. Under load a batch holds many messages
(one commit, a handful of queries); when idle, a batch is one message and nothing
waits on a timer. A send is acknowledged (echoed) only after its batch committed.
A send refused on its own (a deactivated partner, a client_id conflict, a row the
database would not take) fails its own future only; the rest of the batch is stored.
"""

import asyncio
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections, connection

from ..actions import do_send_messages
from ..errors import ChatError
from ..metrics import BATCH_COMMIT_SECONDS, BATCH_SIZE
from ..quietsql import skip_query_log_in_this_thread

MAX_BATCH = 500

# One writer thread for the process: it owns one database connection, and SQLite
# takes one writer at a time anyway. Its statements skip DEBUG's query log (quietsql).
_writer = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="chat-writer", initializer=skip_query_log_in_this_thread
)


def _write(requests):
    close_old_connections()  # a connection the database dropped is replaced, not reused
    started = time.perf_counter()
    results = do_send_messages(requests)
    BATCH_COMMIT_SECONDS.observe(time.perf_counter() - started)
    BATCH_SIZE.observe(len(requests))
    return results


def close_writer_connection():
    """Close the writer thread's connection (tests, shutdown)."""
    _writer.submit(lambda: connection.close()).result(timeout=10)  # look the connection up in that thread


class SendBatcher:
    def __init__(self):
        self._pending = []
        self._flushing = False

    def enqueue(self, request):
        """Queue a send now (so sends keep the order they were enqueued in); the returned
        future resolves to its SendResult once the batch holding it has committed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((request, future))
        if not self._flushing:
            self._flushing = True
            loop.create_task(self._flush())
        return future

    async def _flush(self):
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    results = await loop.run_in_executor(_writer, _write, [request for request, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for (_, future), result in zip(batch, results):
                        if future.done():
                            continue
                        if isinstance(result, ChatError):
                            future.set_exception(result)
                        else:
                            future.set_result(result)
        finally:
            self._flushing = False


_batchers = weakref.WeakKeyDictionary()


def batcher():
    """The batcher of the running event loop."""
    loop = asyncio.get_running_loop()
    instance = _batchers.get(loop)
    if instance is None:
        instance = _batchers[loop] = SendBatcher()
    return instance
