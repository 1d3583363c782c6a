"""The one way events leave an action: `publish_on_commit(events)` hands them, once the
transaction that produced them has committed, to every subscribed sink.

The realtime layer subscribes its hub when Django starts (habitto_chat.realtime's
AppConfig), in every process: the server, management commands, shells. Nothing here
knows who listens; without a subscriber (a host project without the realtime app)
events go nowhere.
"""

import functools

from django.db import transaction

_sinks = []  # callables taking a list of events; called after commit, in the committing thread


def subscribe(sink):
    """Add a sink (idempotent: ready() may run more than once in tests)."""
    if sink not in _sinks:
        _sinks.append(sink)


def publish_on_commit(events):
    if not events:
        return
    for sink in _sinks:
        # robust: a failing sink is logged and never undoes or breaks the committed write.
        transaction.on_commit(functools.partial(sink, events), robust=True)
