"""What one Locust process shares between its users: the scenario, the target, the
delivery tracker and the accounts handed to this process."""

import logging
import secrets

import gevent.event

from .tracker import Tracker

logger = logging.getLogger("loadtests")

SETUP_MESSAGE = "habitto_setup"  # master -> worker: accounts slice, run id, shared start
DONE_MESSAGE = "habitto_done"  # worker -> master: a conversation finished (sent + drained)


class ProcessState:
    def __init__(self):
        self.scenario = None
        self.http_base = None
        self.ws_base = None
        self.run_id = secrets.token_hex(4)
        self.start_at = None  # wall-clock time every conversation starts sending at (or None)
        self.pairs = []
        self.tracker = None
        self.setup_received = gevent.event.Event()
        self.monitor = None  # loadtests.monitor.RunMonitor on the master / the only process
        self.faults = None  # faults.FaultSchedule of a run with faults (the master or only process)
        self.reconnects = []  # (monotonic time, socket kind) of every socket reopened after a drop
        self.call_logs = []  # app scenario: every phone's calls, written when call_log is on

    def configure(self, scenario, http_base, ws_base, on_path, on_anomaly):
        self.scenario = scenario
        self.http_base = http_base.rstrip("/")
        # Several WebSocket bases (comma-separated): a conversation's two accounts use
        # different ones, so their deliveries cross between server processes.
        self.ws_bases = [base.strip().rstrip("/") for base in ws_base.split(",") if base.strip()]
        self.ws_base = self.ws_bases[0] if self.ws_bases else ""
        self._on_path, self._on_anomaly = on_path, on_anomaly
        self.tracker = self._new_tracker()

    def _new_tracker(self):
        return Tracker(self.run_id, self._on_path, self._on_anomaly, self.scenario.expected_paths,
                       journal=self.scenario.reconnects or self.scenario.user_class == "AppConversationUser")

    def ws_base_for(self, index):
        return self.ws_bases[index % len(self.ws_bases)]

    def accept_setup(self, data):
        """The master's setup message: this process's accounts, the run id, the start time."""
        self.run_id = data["run_id"]
        self.start_at = data.get("start_at")
        accounts = data["accounts"]
        self.pairs = [(accounts[i], accounts[i + 1]) for i in range(0, len(accounts) - 1, 2)]
        self.tracker = self._new_tracker()
        self.setup_received.set()
        logger.info("run %s: %d account pairs for this process", self.run_id, len(self.pairs))

    def take_pair(self, timeout=30):
        if not self.setup_received.wait(timeout):
            return None
        return self.pairs.pop(0) if self.pairs else None

    def take_group(self, size, timeout=30):
        """`size` accounts (size // 2 pairs), or None when this process has too few left."""
        if not self.setup_received.wait(timeout) or len(self.pairs) < size // 2:
            return None
        group = [account for _ in range(size // 2) for account in self.pairs.pop(0)]
        return group

    def conversation_done(self, environment):
        try:
            environment.runner.send_message(DONE_MESSAGE, {"conversations": 1})
        except Exception:  # reporting completion is best effort; the run time still bounds the run
            logger.exception("could not report a finished conversation")


STATE = ProcessState()
