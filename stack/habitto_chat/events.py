"""The one publish path: actions hand their events here, and they reach sockets (in this
process directly, in the others through the channel layer) only once the transaction
that produced them has committed."""

from django.db import transaction


def publish_on_commit(events):
    if not events:
        return
    from .realtime.hub import hub  # the realtime side imports models; keep this import late

    transaction.on_commit(lambda: hub.publish(events), robust=True)
