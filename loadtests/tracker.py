"""Delivery bookkeeping for one load-generator process: which message reached which path,
when, and what was lost, duplicated or reordered.

A message is identified by the marker its content starts with: "<run>:<sender>:<seq>:".
Every message sent from A to B is expected on four paths:

    sender_echo    A's room socket      (the acknowledgement: sent after commit)
    partner_room   B's room socket
    sender_inbox   A's inbox socket
    partner_inbox  B's inbox socket

The v2 scenario (one /ws/v2/ device socket per account, loadtests/device_users.py)
expects three instead:

    sender_echo     the ack on A's device socket (its client_id is the marker)
    sender_device   message.created on A's own device socket
    partner_device  message.created on B's device socket

Latency is measured from the message's *intended* send time (its slot in the schedule),
on this process's monotonic clock, so a server that slows the sender down still shows
up in the figures (no coordinated omission). "complete" is the last of the four.

The app scenario expects a path only when its socket was open at the send (a phone's room
socket is open only while that chat is on screen) and excuses the outstanding deliveries
of a socket that closed or dropped (legacy sockets replay nothing; the app catches up
through REST): `expect(..., paths=...)`, `excuse(...)`, `drop_unacknowledged(...)`. An
arrival on a path that was not expected is the server doing better than promised, not a
duplicate.
"""

LEGACY_PATHS = ("sender_echo", "partner_room", "sender_inbox", "partner_inbox")
DEVICE_PATHS = ("sender_echo", "sender_device", "partner_device")
PATHS = (*LEGACY_PATHS, "sender_device", "partner_device")
BIT = {path: 1 << index for index, path in enumerate(PATHS)}
ALL_BITS = sum(BIT.values())


def marker(run_id, sender, seq):
    return f"{run_id}:{sender}:{seq}:"


def make_content(run_id, sender, seq, size):
    """Content of `size` characters (at least the marker) starting with the marker."""
    head = marker(run_id, sender, seq)
    return head + "x" * max(0, size - len(head))


def parse_marker(content, run_id):
    """(sender, seq) of a message of this run, or None for anything else."""
    parts = content.split(":", 3)
    if len(parts) < 4 or parts[0] != run_id:
        return None
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        return None


class OrderCheck:
    """Per receiving socket and sender: duplicates and out-of-order arrivals, in O(gaps) memory."""

    __slots__ = ("last", "gaps")

    def __init__(self):
        self.last = -1
        self.gaps = set()  # sequence numbers skipped over, not seen yet

    def see(self, seq):
        """'ok', 'duplicate' or 'out_of_order' for this arrival."""
        if seq == self.last + 1:
            self.last = seq
            return "ok"
        if seq > self.last:
            self.gaps.update(range(self.last + 1, seq))
            self.last = seq
            return "ok"
        if seq in self.gaps:
            self.gaps.discard(seq)
            return "out_of_order"
        return "duplicate"


class Tracker:
    """Outstanding messages of one process. `on_path(path, ms, complete_ms_or_None)` is fired
    for every first arrival; `on_anomaly(kind, path)` for duplicates, reorders and strays."""

    def __init__(self, run_id, on_path, on_anomaly, paths=LEGACY_PATHS, journal=False):
        self.run_id = run_id
        self.paths = tuple(paths)
        self.expected_bits = sum(BIT[p] for p in paths)  # room-only runs expect two paths
        self.on_path = on_path
        self.on_anomaly = on_anomaly
        self.pending = {}  # (sender, seq) -> [intended, missing bits, conversation key]
        self.orders = {}  # (socket key, sender) -> OrderCheck
        self.sent = 0
        self.completed = 0
        self.given_up = set()  # (sender, seq) declared lost: a later arrival is "late", not a duplicate
        self.resent = set()  # (sender, seq) sent again after a reconnect: arrives after later ones
        self.repaired_on = set()  # (socket key, ident) fetched after a reconnect: its live frame is not a duplicate
        # Runs with faults keep every message's fate (faults.py judges it by time window):
        # (sender, seq) -> Fate.
        self.journal = {} if journal else None
        self.unexpected = {}  # (sender, seq) -> bits of the paths not expected (closed or dropped sockets)

    def expect(self, sender, seq, intended, conversation, paths=None):
        bits = self.expected_bits if paths is None else sum(BIT[p] for p in paths)
        self.pending[(sender, seq)] = [intended, bits, conversation]
        if bits != self.expected_bits:
            self.unexpected[(sender, seq)] = ALL_BITS & ~bits
        self.sent += 1
        if self.journal is not None:
            self.journal[(sender, seq)] = Fate(intended, conversation)

    def excuse(self, conversation, sender, path):
        """The socket behind `path` of `sender`'s messages in `conversation` closed or dropped:
        what it has not delivered yet is no longer expected live. Returns how many deliveries."""
        bit, count = BIT[path], 0
        for ident, record in list(self.pending.items()):
            if record[2] == conversation and ident[0] == sender and record[1] & bit:
                record[1] &= ~bit
                self.unexpected[ident] = self.unexpected.get(ident, 0) | bit
                count += 1
                if not record[1]:
                    del self.pending[ident]
        return count

    def drop_unacknowledged(self, conversation, sender):
        """`sender`'s room socket closed or dropped: sends still awaiting their echo may or may
        not be stored; none of their deliveries is expected any more. Returns how many sends."""
        count = 0
        for ident, record in list(self.pending.items()):
            if record[2] == conversation and ident[0] == sender and record[1] & BIT["sender_echo"]:
                del self.pending[ident]
                self.unexpected[ident] = ALL_BITS
                if self.journal is not None:
                    self.journal[ident].outcome = "dropped"  # reconcile() tells whether it was stored
                count += 1
        return count

    def forget(self, sender, seq):
        """A send that never left (the socket failed): nothing is expected."""
        if self.pending.pop((sender, seq), None) is not None:
            self.sent -= 1
            if self.journal is not None:
                self.journal[(sender, seq)].outcome = "send_failed"

    def arrived(self, socket_key, path, content, now):
        """Account one frame that arrived on `path` of socket `socket_key` at `now`."""
        ident = parse_marker(content, self.run_id)
        if ident is None:
            self.on_anomaly("stray", path)
            return
        if self.repaired_on and (socket_key, ident) in self.repaired_on:
            self.repaired_on.discard((socket_key, ident))  # already fetched over REST after a reconnect
            return
        sender, seq = ident
        order = self.orders.get((socket_key, sender))
        if order is None:
            order = self.orders[(socket_key, sender)] = OrderCheck()
        verdict = order.see(seq)
        if verdict == "duplicate":
            # A message sent again with its client_id is acknowledged again by design: the
            # first ack may still arrive on the old socket after the reconnect resent it.
            if not (path == "sender_echo" and ident in self.resent):
                self.on_anomaly("duplicate", path)
            return
        if verdict == "out_of_order" and ident not in self.resent:
            self.on_anomaly("out_of_order", path)
        record = self.pending.get(ident)
        if record is None and ident in self.given_up:
            self.on_anomaly("late", path)  # already counted lost when the drain ended
            return
        if self.unexpected.get(ident, 0) & BIT[path]:
            return  # delivered on a socket that was not open at the send, or closed meanwhile
        if record is None or not record[1] & BIT[path]:
            # Already counted on this path through another socket of the same kind.
            self.on_anomaly("duplicate", path)
            return
        self._deliver(ident, record, path, now)

    def repaired(self, socket_key, path, content, now):
        """A message fetched over REST after `socket_key` reconnected (what a client does to
        catch up): fills its gap on that socket without counting it out of order, and its
        live frame, should it still come, is not a duplicate."""
        ident = parse_marker(content, self.run_id)
        if ident is None:
            return
        sender, seq = ident
        order = self.orders.get((socket_key, sender))
        if order is None:
            order = self.orders[(socket_key, sender)] = OrderCheck()
        if seq in order.gaps:
            order.gaps.discard(seq)
        elif seq > order.last:
            order.gaps.update(range(order.last + 1, seq))
            order.last = seq
        else:
            return  # this socket saw it live already
        self.repaired_on.add((socket_key, ident))
        record = self.pending.get(ident)
        if record is not None and record[1] & BIT[path]:
            self._deliver(ident, record, path, now)

    def _deliver(self, ident, record, path, now):
        record[1] &= ~BIT[path]
        latency_ms = (now - record[0]) * 1000.0
        complete_ms = None
        fate = self.journal.get(ident) if self.journal is not None else None
        if fate is not None and path == "sender_echo":
            fate.acked_at = now
        if not record[1]:
            del self.pending[ident]
            self.completed += 1
            complete_ms = latency_ms
            if fate is not None:
                fate.complete_at, fate.outcome = now, "complete"
        self.on_path(path, latency_ms, complete_ms)

    def unacknowledged(self, sender, conversation):
        """Sequence numbers of `sender`'s outstanding messages without an echo (to send
        again after a reconnect, protocol 2); marked as resent."""
        echo = BIT["sender_echo"]
        seqs = sorted(seq for (who, seq), record in self.pending.items()
                      if who == sender and record[2] == conversation and record[1] & echo)
        self.resent.update((sender, seq) for seq in seqs)
        return seqs

    def outstanding(self, conversation=None):
        if conversation is None:
            return len(self.pending)
        return sum(1 for r in self.pending.values() if r[2] == conversation)

    def give_up(self, conversation=None):
        """Declare everything still outstanding lost: {path: count}, and the messages lost."""
        lost = {path: 0 for path in self.paths}
        doomed = [k for k, r in self.pending.items() if conversation is None or r[2] == conversation]
        for key in doomed:
            bits = self.pending.pop(key)[1]
            self.given_up.add(key)
            if self.journal is not None:
                self.journal[key].outcome = "lost"
            for path in self.paths:
                if bits & BIT[path]:
                    lost[path] += 1
        return lost, len(doomed)

    def reconcile(self, conversation, stored):
        """Runs with faults and the app scenario, before give_up: compare the conversation's messages with the
        `stored` (sender, seq) set the server returned. Outstanding and neither echoed nor
        stored: the send failed unacknowledged (nothing is expected any more). Echoed, or
        complete, yet not stored: an acknowledged message the server lost.
        Returns (unacknowledged, acknowledged but not stored)."""
        unacked = not_stored = 0
        for ident, fate in self.journal.items():
            if fate.conversation != conversation or fate.outcome == "send_failed":
                continue
            if ident in stored:
                fate.stored = True
                continue
            if fate.acked_at is None and (ident in self.pending or fate.outcome == "dropped"):
                self.pending.pop(ident, None)
                fate.outcome = "unacknowledged"
                unacked += 1
            elif fate.acked_at is not None:
                fate.stored = False
                not_stored += 1
        return unacked, not_stored


class Fate:
    """What became of one message (runs with faults): when it was meant to be sent, when
    its echo and its last delivery came, whether the server still has it, and the outcome:
    pending, complete, lost, unacknowledged (sent, never echoed, not stored), send_failed
    (never left the client) or dropped (its room socket went away before the echo; until
    reconcile() says whether it was stored)."""

    __slots__ = ("intended", "conversation", "acked_at", "complete_at", "stored", "outcome")

    def __init__(self, intended, conversation):
        self.intended = intended
        self.conversation = conversation
        self.acked_at = self.complete_at = self.stored = None
        self.outcome = "pending"

    @property
    def acknowledged_lost(self):
        """The server confirmed it (echo, or it is stored), yet a path or the store lacks it."""
        return self.outcome == "lost" or (self.stored is False and self.acked_at is not None)
