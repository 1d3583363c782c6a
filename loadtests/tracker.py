"""Delivery bookkeeping for one load-generator process: which message reached which path,
when, and what was lost, duplicated or reordered.

A message is identified by the marker its content starts with: "<run>:<sender>:<seq>:".
Every message sent from A to B is expected on four paths:

    sender_echo    A's room socket      (the acknowledgement: sent after commit)
    partner_room   B's room socket
    sender_inbox   A's inbox socket
    partner_inbox  B's inbox socket

Latency is measured from the message's *intended* send time (its slot in the schedule),
on this process's monotonic clock, so a server that slows the sender down still shows
up in the figures (no coordinated omission). "complete" is the last of the four.

The app scenario expects a path only when its socket was open at the send (a phone's room
socket is open only while that chat is on screen) and excuses the outstanding deliveries
of a socket that dropped (legacy sockets replay nothing; the app catches up through REST):
`expect(..., paths=...)`, `excuse(...)`, `unacknowledged(...)`. An arrival on a path that
was not expected is the server doing better than promised, not a duplicate.
"""

PATHS = ("sender_echo", "partner_room", "sender_inbox", "partner_inbox")
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

    def __init__(self, run_id, on_path, on_anomaly, paths=PATHS, keep_acknowledged=False):
        self.run_id = run_id
        self.expected_bits = sum(BIT[p] for p in paths)  # room-only runs expect two paths
        self.on_path = on_path
        self.on_anomaly = on_anomaly
        self.pending = {}  # (sender, seq) -> [intended, missing bits, conversation key, expected bits]
        self.orders = {}  # (socket key, sender) -> OrderCheck
        self.sent = 0
        self.completed = 0
        self.given_up = set()  # (sender, seq) declared lost: a later arrival is "late", not a duplicate
        # conversation -> {(sender, seq)} whose echo arrived (kept for the app scenario's stored check)
        self.acknowledged = {} if keep_acknowledged else None
        self.unexpected = {}  # (sender, seq) -> bits of the paths not expected (closed or dropped sockets)

    def expect(self, sender, seq, intended, conversation, paths=None):
        bits = self.expected_bits if paths is None else sum(BIT[p] for p in paths)
        self.pending[(sender, seq)] = [intended, bits, conversation]
        if bits != self.expected_bits:
            self.unexpected[(sender, seq)] = ALL_BITS & ~bits
        self.sent += 1

    def excuse(self, conversation, sender, path):
        """The socket behind `path` of `sender`'s messages in `conversation` dropped: what it
        has not delivered yet is no longer expected live. Returns how many deliveries."""
        bit, count = BIT[path], 0
        for ident, record in list(self.pending.items()):
            if record[2] == conversation and ident[0] == sender and record[1] & bit:
                record[1] &= ~bit
                self.unexpected[ident] = self.unexpected.get(ident, 0) | bit
                count += 1
                if not record[1]:
                    del self.pending[ident]
        return count

    def unacknowledged(self, conversation, sender):
        """`sender`'s room socket dropped: sends still awaiting their echo may or may not be
        stored; none of their deliveries is expected any more. Returns how many sends."""
        count = 0
        for ident, record in list(self.pending.items()):
            if record[2] == conversation and ident[0] == sender and record[1] & BIT["sender_echo"]:
                del self.pending[ident]
                self.unexpected[ident] = ALL_BITS
                count += 1
        return count

    def forget(self, sender, seq):
        """A send that never left (the socket failed): nothing is expected."""
        if self.pending.pop((sender, seq), None) is not None:
            self.sent -= 1

    def arrived(self, socket_key, path, content, now):
        """Account one frame that arrived on `path` of socket `socket_key` at `now`."""
        ident = parse_marker(content, self.run_id)
        if ident is None:
            self.on_anomaly("stray", path)
            return
        sender, seq = ident
        order = self.orders.get((socket_key, sender))
        if order is None:
            order = self.orders[(socket_key, sender)] = OrderCheck()
        verdict = order.see(seq)
        if verdict == "duplicate":
            self.on_anomaly("duplicate", path)
            return
        if verdict == "out_of_order":
            self.on_anomaly("out_of_order", path)
        record = self.pending.get(ident)
        if record is None and ident in self.given_up:
            self.on_anomaly("late", path)  # already counted lost when the drain ended
            return
        if self.unexpected.get(ident, 0) & BIT[path]:
            return  # delivered on a socket that was not open at the send, or dropped meanwhile
        if record is None or not record[1] & BIT[path]:
            # Already counted on this path through another socket of the same kind.
            self.on_anomaly("duplicate", path)
            return
        record[1] &= ~BIT[path]
        if path == "sender_echo" and self.acknowledged is not None:
            self.acknowledged.setdefault(record[2], set()).add(ident)
        latency_ms = (now - record[0]) * 1000.0
        complete_ms = None
        if not record[1]:
            del self.pending[ident]
            self.completed += 1
            complete_ms = latency_ms
        self.on_path(path, latency_ms, complete_ms)

    def outstanding(self, conversation=None):
        if conversation is None:
            return len(self.pending)
        return sum(1 for r in self.pending.values() if r[2] == conversation)

    def give_up(self, conversation=None):
        """Declare everything still outstanding lost: {path: count}, and the messages lost."""
        lost = {path: 0 for path in PATHS}
        doomed = [k for k, r in self.pending.items() if conversation is None or r[2] == conversation]
        for key in doomed:
            bits = self.pending.pop(key)[1]
            self.given_up.add(key)
            for path in PATHS:
                if bits & BIT[path]:
                    lost[path] += 1
        return lost, len(doomed)
