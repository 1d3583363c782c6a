"""Statements the group-commit writer runs without DEBUG's query log.

With DEBUG on (`make run`), every cursor Django hands out is a CursorDebugWrapper: it
times each statement, appends it to connection.queries and, on SQLite, quotes every
parameter through SQLite once more to show the statement (last_executed_query), which
for a batch's multi-row INSERT costs about as much as a slice of the INSERT itself.
Django decides per connection (`queries_logged`: settings.DEBUG or force_debug_cursor)
and has no per-thread switch, so the chat's statements take their cursor from
`quiet_cursor`: the same steps as `connection.cursor()`, wrapped with the backend's
`make_cursor` ("a cursor without debug logging") in a thread that asked for it.

Only the batcher's writer thread asks (`skip_query_log_in_this_thread`). Everywhere else,
and whenever something forces logging (CaptureQueriesContext, assertNumQueries set
`force_debug_cursor`), `quiet_cursor` is `connection.cursor()`. What the writer does not
run itself still goes through the ORM's own cursor and is logged under DEBUG: the
transaction's BEGIN/COMMIT (a fixed few microseconds) and the host's USER_CARDS query.
"""

import threading

from django.db import connection

_thread = threading.local()


def skip_query_log_in_this_thread():
    """From now on the chat statements of this thread bypass DEBUG's query log. For a
    thread that does nothing but store batches (realtime/batcher.py's writer)."""
    _thread.quiet = True


def quiet_cursor():
    """A cursor on this thread's connection, without the query log if the thread asked."""
    if not getattr(_thread, "quiet", False) or connection.force_debug_cursor:
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = connection.create_cursor()
    connection.validate_thread_sharing()
    return connection.make_cursor(raw)


def select_rows(queryset):
    """The rows of a values_list() queryset, run on quiet_cursor, with the ORM's converters
    applied (e.g. SQLite's datetimes come back as datetimes, as through the ORM)."""
    compiler = queryset.query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    with quiet_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    converters = compiler.get_converters([expression for expression, _, _ in compiler.select])
    return list(compiler.apply_converters(rows, converters)) if converters else rows
