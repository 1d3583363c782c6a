"""The group commit's statements: messages in and out as plain rows, no model instances.

`insert_messages` stores a batch of sends with one multi-row `INSERT ... RETURNING id`
per chunk, built from `Message`'s own metadata (columns, `db_column`, each field's
`pre_save` and `get_db_prep_save`), on SQLite (3.35+) and PostgreSQL. Not `bulk_create`:
it builds a `Message()` per row (signals included) and compiles the statement anew for
every batch; under a flood that cost more than the INSERT itself (docs/realtime.md).

Ids: the returned ids are sorted and given to the rows in their order, so nothing
depends on the order RETURNING reports rows in (neither SQLite nor PostgreSQL promises
it; `bulk_create` relies on it). What remains is that a statement takes its ids in the
order of its rows, which both databases do (a sequence or rowid advancing row by row)
and which is the order per conversation the chat needs anyway; the conversation lock
(actions) keeps the ids of one conversation committing in that order.

Statements run on `quietsql.quiet_cursor`: the group-commit writer does not pay DEBUG's
query log.
"""

import functools
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, NotSupportedError, connection, connections

from .models import Message
from .quietsql import quiet_cursor, select_rows


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A committed message as the send path knows it (what wire.message_dict reads)."""

    id: int
    conversation_id: int
    sender_id: int
    receiver_id: int
    content: str
    client_id: str | None
    created_at: datetime
    edited_at: datetime | None


# --- the INSERT ------------------------------------------------------------------------

# What a SendRequest (or any row object) carries; every other column takes the value Django
# would give it on save (default, auto_now_add: Field.pre_save), once per batch.
_ROW_ATTRIBUTES = ("conversation_id", "sender_id", "receiver_id", "content", "client_id")
_FIELDS = [f for f in Message._meta.concrete_fields if not f.primary_key and not f.generated]
_ROW_FIELDS = [Message._meta.get_field(name) for name in _ROW_ATTRIBUTES]
_BATCH_FIELDS = [f for f in _FIELDS if f.attname not in _ROW_ATTRIBUTES]
_row_values = attrgetter(*_ROW_ATTRIBUTES)
# Every value goes in as a plain parameter: a field with its own SQL placeholder or a
# database default needs Django's compiler, so a model change that adds one fails here.
_NEEDS_COMPILER = [f.name for f in _FIELDS if hasattr(f, "get_placeholder") or f.has_db_default()]
if _NEEDS_COMPILER:
    raise ImproperlyConfigured(f"message_store cannot insert Message fields {_NEEDS_COMPILER}")
# Rows per statement follow Django's max_query_params (SQLite: 999 in Django 5.2).
# PostgreSQL has none there: its UNNEST form takes 7 parameters for any row count, and
# chunks stay under what its protocol's 16-bit parameter count would allow a VALUES form.
_POSTGRES_MAX_PARAMS = 65535


def insert_messages(rows):
    """Insert these sends (objects with conversation_id, sender_id, receiver_id, content,
    client_id) inside the caller's transaction; the StoredMessages, in the rows' order,
    with ids increasing in that order."""
    if not rows:
        return []
    if not connection.features.can_return_rows_from_bulk_insert:
        raise NotSupportedError("storing messages needs INSERT ... RETURNING (SQLite 3.35+ or PostgreSQL)")
    db = connections[DEFAULT_DB_ALIAS]  # the thread's wrapper itself, not the proxy per value
    template = Message()  # one per batch: what pre_save gives the columns rows do not carry
    batch_values = [f.pre_save(template, add=True) for f in _BATCH_FIELDS]
    batch_prepared = [f.get_db_prep_save(v, db) for f, v in zip(_BATCH_FIELDS, batch_values)]
    values = [_row_values(row) for row in rows]
    # Each field prepares each distinct value once per batch (ids repeat across a batch).
    columns = [map(_Prepared(field, db).__getitem__, column) for field, column in zip(_ROW_FIELDS, zip(*values))]
    prepared = [[*row, *batch_prepared] for row in zip(*columns)]
    ids = []
    with quiet_cursor() as cursor:
        for start in range(0, len(prepared), _rows_per_statement()):
            chunk = prepared[start : start + _rows_per_statement()]
            sql, params = _statement(chunk)
            cursor.execute(sql, params)
            returned = sorted(row[0] for row in cursor.fetchall())
            if len(returned) != len(chunk):
                raise RuntimeError(f"INSERT returned {len(returned)} ids for {len(chunk)} rows")
            ids += returned
    built = dict(zip((f.attname for f in _BATCH_FIELDS), batch_values))
    return [StoredMessage(id_, *row_values, **built) for id_, row_values in zip(ids, values)]


class _Prepared(dict):
    """field.get_db_prep_save(value) for each value asked, computed once."""

    def __init__(self, field, db):
        super().__init__()
        self.field, self.db = field, db

    def __missing__(self, value):
        prepared = self[value] = self.field.get_db_prep_save(value, self.db)
        return prepared


def _rows_per_statement():
    limit = connection.features.max_query_params or _POSTGRES_MAX_PARAMS
    return max(1, limit // len(_FIELDS))


def _statement(chunk):
    """SQL and parameters for these prepared rows: one array per column through UNNEST on
    PostgreSQL (what bulk_create does there: one plan for any row count), VALUES elsewhere."""
    if connection.vendor == "postgresql":
        return _sql(connection.vendor, None), [list(column) for column in zip(*chunk)]
    return _sql(connection.vendor, len(chunk)), [value for row in chunk for value in row]


@functools.lru_cache(maxsize=1024)
def _sql(vendor, count):
    """The statement text for a vendor and a row count (None: the UNNEST form)."""
    quote = connection.ops.quote_name
    fields = _ROW_FIELDS + _BATCH_FIELDS
    head = f"INSERT INTO {quote(Message._meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
    returning = f"RETURNING {quote(Message._meta.pk.column)}"
    if count is None:
        # Array types without length modifiers (no varchar(64)[] truncation), as bulk_create does.
        arrays = ", ".join(f"(%s)::{f.db_type(connection).split('(')[0]}[]" for f in fields)
        return f"{head} SELECT * FROM UNNEST({arrays}) {returning}"
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return f"{head} VALUES {', '.join([row] * count)} {returning}"


_STORED_ATTRIBUTES = tuple(StoredMessage.__dataclass_fields__)


def messages_by_client_id(requests):
    """{(sender_id, client_id): StoredMessage} of the stored messages these sends' client_ids
    name (sends without one are skipped): one query."""
    keyed = [r for r in requests if r.client_id is not None]
    if not keyed:
        return {}
    rows = select_rows(
        Message.objects.filter(
            sender_id__in={r.sender_id for r in keyed}, client_id__in={r.client_id for r in keyed}
        ).values_list(*_STORED_ATTRIBUTES)
    )
    messages = (StoredMessage(*row) for row in rows)
    return {(m.sender_id, m.client_id): m for m in messages}
