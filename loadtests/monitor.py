"""What happens during a run, sampled every few seconds on the master (or the only process):
latency per row over time, the load generator's own CPU, the server's /metrics, and a
progress line on the console.

The samples become the `timeline` of the summary (the HTML report draws it) and the
generator's CPU becomes part of the run's validity (loadtests/gate.py).

Latency per interval comes from the difference of Locust's per-row response-time
histograms between two samples, so it also works on a master, whose statistics are the
workers' merged reports (they arrive every 3 s).
"""

import logging
import os
import time

import gevent
import psutil

from habitto_client import ChatError, ChatHTTP

logger = logging.getLogger("loadtests")

SAMPLE_INTERVAL = 2.0  # seconds between samples
PROGRESS_EVERY = 2  # print a progress line every this many samples
CPU_WINDOW = 5.0  # seconds: the generator's CPU is judged on its busiest window this long
PROGRESS_ROW = "fanout complete"


def interval_percentiles(now, before):
    """{"n", "p50", "p95", "p99"} of the responses in histogram `now` minus histogram `before`
    ({rounded ms: count} as Locust keeps them); None when nothing arrived in between."""
    delta = {ms: count - before.get(ms, 0) for ms, count in now.items() if count > before.get(ms, 0)}
    total = sum(delta.values())
    if not total:
        return None
    result = {"n": total}
    ordered = sorted(delta.items())
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        rank, seen = q * total, 0
        for ms, count in ordered:
            seen += count
            if seen >= rank:
                result[name] = ms
                break
    return result


def schedstat_busy_seconds(pid="self"):
    """Seconds the process's main thread (where every greenlet runs) spent on a CPU plus
    waiting in a run queue for one (Linux /proc/<pid>/schedstat), or None elsewhere."""
    try:
        with open(f"/proc/{pid}/schedstat") as handle:
            on_cpu, waiting = handle.read().split()[:2]
    except (OSError, ValueError):
        return None
    return (int(on_cpu) + int(waiting)) / 1e9


def busiest(samples, key="busy_s", process="local", window=CPU_WINDOW):
    """Highest share of wall time (in cores) of one generator process over any `window`
    seconds of the samples' cumulative seconds `key` ("cpu_s": on a CPU; "busy_s": on a
    CPU or waiting for one); None with fewer than two samples."""
    points = [(s["t"], s[key][process]) for s in samples if process in s.get(key, {})]
    best = None
    for i, (t_end, cpu_end) in enumerate(points):
        for t_start, cpu_start in reversed(points[:i]):
            if t_end - t_start >= window or t_start == points[0][0]:
                if t_end > t_start:
                    share = (cpu_end - cpu_start) / (t_end - t_start)
                    best = share if best is None else max(best, share)
                break
    return best


def parse_metrics(text):
    """Prometheus text format -> {name: summed value over all label sets}. (The load
    generator's image has no prometheus_client: it installs no server dependencies.)"""
    totals = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            totals[name] = totals.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return totals


def server_figures(now, before, seconds):
    """Commit time, batch size, stored rate and open sockets between two scrapes."""
    def delta(name):
        # A counter that went down: the process restarted (a fault); count from zero.
        earlier = before.get(name, 0)
        return now.get(name, 0) - (earlier if now.get(name, 0) >= earlier else 0)

    def mean(prefix, scale=1.0):
        count, total = delta(f"{prefix}_count"), delta(f"{prefix}_sum")
        return total / count * scale if count > 0 else None

    stored = delta("habitto_chat_messages_stored_total")
    return {
        "commit_ms": mean("habitto_chat_batch_commit_seconds", 1000.0),
        "batch_size": mean("habitto_chat_batch_size_messages"),
        "stored_per_s": stored / seconds if seconds > 0 else None,
        "sockets": now.get("habitto_chat_sockets_open"),
    }


class MetricsScraper:
    """GET /metrics of each backend process (it answers loopback requests, or a bearer
    token: LOADTEST_METRICS_TOKEN). Stops asking after the first refusal (an HTTP status
    other than 200); a backend that does not answer (restarting during a fault) only
    leaves a gap."""

    def __init__(self, urls, token=None):
        self.clients = [ChatHTTP(url, timeout=2) for url in urls if url]
        self.token = token
        self.note = "" if self.clients else "no /metrics URL"

    def scrape(self):
        """{name: value} summed over the processes, or None when unavailable."""
        if not self.clients:
            return None
        totals = {}
        for client in self.clients:
            try:
                resp = client.metrics(token=self.token)
            except ChatError as exc:
                logger.info("server metrics: %s", exc)
                return None
            error = f"HTTP {resp.status}" if resp.status != 200 or not isinstance(resp.body, str) else ""
            if error:
                self.note = f"{client.base_url}/metrics unavailable ({error})"
                logger.warning("server metrics: %s; not scraping any more", self.note)
                self.clients = []
                return None
            for name, value in parse_metrics(resp.body).items():
                totals[name] = totals.get(name, 0.0) + value
        return totals


class RunMonitor:
    """Samples the runner's statistics, the generator's CPU and the server's metrics."""

    def __init__(self, runner, metrics_urls, interval=SAMPLE_INTERVAL):
        self.runner = runner
        self.interval = interval
        self.scraper = MetricsScraper(metrics_urls, os.environ.get("LOADTEST_METRICS_TOKEN") or None)
        self.process = psutil.Process()
        self.samples = []
        self.started = self.started_at = None
        self.greenlet = None
        self._histograms = {}
        self._metrics = None
        self._last = None

    def start(self):
        self.started = time.monotonic()
        self.started_at = time.time()  # wall clock of t=0, to place fault windows
        self._last = self.started
        self._metrics = self.scraper.scrape()
        self.greenlet = gevent.spawn(self._loop)

    def stop(self):
        """Take the last sample and stop; returns the timeline for the summary."""
        if self.greenlet is not None:
            self.greenlet.kill(block=True)
            self.greenlet = None
            self.sample()
        return {
            "started_at": self.started_at,
            "interval": self.interval,
            "samples": self.samples,
            "server_metrics": self.scraper.note or "scraped",
        }

    def _loop(self):
        count = 0
        while True:
            gevent.sleep(self.interval)
            self.sample()
            count += 1
            if count % PROGRESS_EVERY == 0:
                print(self.progress_line(), flush=True)

    def _cpu(self):
        """Cumulative CPU seconds of this process, its busy seconds (CPU + run-queue wait),
        and the workers' own reported CPU share (Locust's psutil figure, CPU only)."""
        times = self.process.cpu_times()
        cpu = {"local": times.user + times.system}
        busy_seconds = schedstat_busy_seconds()
        busy = {} if busy_seconds is None else {"local": busy_seconds}
        workers = {}
        for client in getattr(self.runner, "clients", {}).values():
            workers[f"worker {client.id[-8:]}"] = client.cpu_usage / 100.0
        return cpu, busy, workers

    def sample(self):
        now = time.monotonic()
        stats = self.runner.stats
        rows = {}
        for (name, method), entry in list(stats.entries.items()):
            if not entry.num_requests:
                continue
            key = f"{method} {name}"
            current = dict(entry.response_times)
            figures = interval_percentiles(current, self._histograms.get(key, {}))
            self._histograms[key] = current
            if figures:
                rows[key] = figures
        cpu_s, busy_s, workers = self._cpu()
        sample = {
            "t": round(now - self.started, 3),
            "rows": rows,
            "failures": stats.total.num_failures,
            "lost": sum(e.num_failures for (name, _), e in stats.entries.items() if name.startswith("lost ")),
            "cpu_s": cpu_s,
            "busy_s": busy_s,
            "worker_cpu": workers,
        }
        metrics = self.scraper.scrape()
        if metrics is not None and self._metrics is not None:
            sample["server"] = server_figures(metrics, self._metrics, now - self._last)
        self._metrics = metrics
        self._last = now
        self.samples.append(sample)
        return sample

    def generator_cpu(self):
        """{process: busiest share of a core over CPU_WINDOW} over the run: this process's
        CPU demand (on a CPU or waiting for one: a generator starved on a shared machine is
        saturated too), else its CPU time; the workers' CPU as they report it."""
        result = {}
        local = busiest(self.samples)
        if local is None:
            local = busiest(self.samples, "cpu_s")
        if local is not None:
            result["local"] = local
        for sample in self.samples:
            for name, share in sample.get("worker_cpu", {}).items():
                result[name] = max(result.get(name, 0.0), share)
        return result

    def progress_line(self):
        last = self.samples[-1]
        complete = last["rows"].get(f"WS {PROGRESS_ROW}", {})
        done = self.runner.stats.entries.get((PROGRESS_ROW, "WS"))
        p99 = done.get_response_time_percentile(0.99) if done and done.num_requests else None
        span = last["t"] - (self.samples[-2]["t"] if len(self.samples) > 1 else 0)
        rate = complete.get("n", 0) / span if span > 0 else 0.0
        cpu = busiest(self.samples[-3:], "cpu_s", window=0) or 0.0
        busy = busiest(self.samples[-3:], window=0)
        return (f"loadtest: t={last['t']:.0f}s  complete {rate:.0f} msgs/s  p99 so far "
                f"{'-' if p99 is None else f'{p99:.0f} ms'}  lost so far {last['lost']}  "
                f"failures {last['failures']}  generator CPU {cpu:.0%}"
                + ("" if busy is None else f" (busy {busy:.0%})"))
