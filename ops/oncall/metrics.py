"""What a backend's /metrics says about commit time and error rates, against fabric.yml's
`oncall.metrics` thresholds (the numbers of the Prometheus alerts in docs/metrics.md).

A check scrapes each backend twice, `metrics.interval` seconds apart (the other checks
run in between), and judges the difference, as Prometheus's rate() over a window would:

- commit p99: the 0.99 quantile of `habitto_chat_batch_commit_seconds`, interpolated in
  its buckets as histogram_quantile() does; > commit_p99_warn_ms is WARNING;
- 5xx ratio: the share of `habitto_http_responses_total` with a 5xx status, leaving out
  the monitoring routes (healthz, readyz, metrics: the checks' own requests and the
  container health checks are not user traffic); > http_5xx_ratio_warn is WARNING;
- layer errors: `habitto_chat_layer_publish_errors_total` + `..._receive_errors_total`
  new between the scrapes; layer_errors_warn (default 1) or more is WARNING.

A window without batches (or without responses) says nothing, so commit p99 and the 5xx
ratio fall back to the process's lifetime values (labelled "since start"). Layer errors
do not: an error an hour ago that the process recovered from is not a warning now.
A counter that went down between the scrapes means the process restarted: the second
scrape alone is used. The text format is parsed by prometheus_client's parser.
"""

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from .results import Perf, Status

COMMIT = "habitto_chat_batch_commit_seconds"
RESPONSES = "habitto_http_responses_total"
LAYER_ERRORS = ("habitto_chat_layer_publish_errors_total", "habitto_chat_layer_receive_errors_total")
MONITORING_ROUTES = {"healthz", "readyz", "metrics"}
QUANTILE = 0.99


class MetricsFormatError(Exception):
    """The scraped text is not the Prometheus text format."""


@dataclass
class Scrape:
    """The series one scrape of a backend holds that the thresholds read."""

    commit_buckets: dict = field(default_factory=dict)  # upper bound (float, inf) -> cumulative count
    responses: dict = field(default_factory=dict)  # (route, status) -> count
    layer_errors: float = 0.0

    @property
    def batches(self):
        return self.commit_buckets.get(float("inf"), 0.0)

    def user_responses(self):
        return {key: n for key, n in self.responses.items() if key[0] not in MONITORING_ROUTES}


def parse(text):
    """Prometheus text -> Scrape; raises MetricsFormatError."""
    scrape = Scrape()
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == COMMIT + "_bucket":
                    bound = float(sample.labels["le"])
                    scrape.commit_buckets[bound] = scrape.commit_buckets.get(bound, 0.0) + sample.value
                elif sample.name == RESPONSES:
                    key = (sample.labels.get("route", ""), sample.labels.get("status", ""))
                    scrape.responses[key] = scrape.responses.get(key, 0.0) + sample.value
                elif sample.name in LAYER_ERRORS:
                    scrape.layer_errors += sample.value
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise MetricsFormatError(f"not the Prometheus text format: {exc}") from None
    return scrape


def difference(first, second):
    """What happened between two scrapes; None when a counter went down (a restart)."""
    buckets = {b: n - first.commit_buckets.get(b, 0.0) for b, n in second.commit_buckets.items()}
    responses = {k: n - first.responses.get(k, 0.0) for k, n in second.responses.items()}
    errors = second.layer_errors - first.layer_errors
    if min([*buckets.values(), *responses.values(), errors], default=0.0) < 0:
        return None
    return Scrape(buckets, responses, errors)


def quantile(q, buckets):
    """histogram_quantile(q) of cumulative buckets {upper bound: count}; None without observations.

    Linear interpolation inside the bucket holding the rank, the lowest bucket starting at
    0; a rank in the +Inf bucket gives the highest finite bound (as Prometheus does).
    """
    bounds = sorted(buckets)
    total = buckets.get(float("inf"), buckets[bounds[-1]] if bounds else 0.0)
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


@dataclass
class Reading:
    """One metric's value, where it came from, and its verdict."""

    name: str  # the threshold's key in oncall.metrics
    value: float | None
    text: str
    status: Status = Status.OK


def judge(first, second, thresholds, window_seconds=None):
    """Readings of the three thresholded metrics from one or two scrapes (second may be None)."""
    window = difference(first, second) if second is not None else None
    latest = second if second is not None else first
    span = f"last {window_seconds:.1f} s" if window_seconds is not None else "window"
    restarted = second is not None and window is None
    return [
        _commit(window, latest, thresholds["commit_p99_warn_ms"], span),
        _errors_5xx(window, latest, thresholds["http_5xx_ratio_warn"], span),
        _layer(window, latest, thresholds["layer_errors_warn"], span, restarted),
    ]


def _commit(window, latest, warn_ms, span):
    source, where = (window, span) if window is not None and window.batches > 0 else (latest, "since start")
    p99 = quantile(QUANTILE, source.commit_buckets)
    if p99 is None:
        return Reading("commit_p99_warn_ms", None, "commit p99: no batch committed yet")
    value = p99 * 1000.0
    text = f"commit p99 {value:.1f} ms ({where}, {source.batches:.0f} batches)"
    if value > warn_ms:
        return Reading("commit_p99_warn_ms", value, f"{text} > commit_p99_warn_ms {warn_ms:g}", Status.WARNING)
    return Reading("commit_p99_warn_ms", value, text)


def _errors_5xx(window, latest, warn_ratio, span):
    def counts(scrape):
        user = scrape.user_responses()
        return sum(user.values()), sum(n for (_, status), n in user.items() if status.startswith("5"))

    total, errors = counts(window) if window is not None else (0.0, 0.0)
    where = span
    if total <= 0:
        (total, errors), where = counts(latest), "since start"
    if total <= 0:
        return Reading("http_5xx_ratio_warn", None, "5xx: no HTTP response yet (monitoring routes left out)")
    ratio = errors / total
    text = f"5xx {ratio:.1%} of {total:.0f} responses ({where})"
    if ratio > warn_ratio:
        return Reading("http_5xx_ratio_warn", ratio, f"{text} > http_5xx_ratio_warn {warn_ratio:g}", Status.WARNING)
    return Reading("http_5xx_ratio_warn", ratio, text)


def _layer(window, latest, warn, span, restarted):
    if window is None:
        why = "the process restarted between the scrapes" if restarted else "one scrape only"
        return Reading("layer_errors_warn", None,
                       f"layer errors: not measured ({why}; {latest.layer_errors:.0f} since start)")
    text = f"layer errors {window.layer_errors:.0f} new ({span}; {latest.layer_errors:.0f} since start)"
    if window.layer_errors >= warn:
        return Reading("layer_errors_warn", window.layer_errors,
                       f"{text} >= layer_errors_warn {warn:g}", Status.WARNING)
    return Reading("layer_errors_warn", window.layer_errors, text)


PERF = {  # threshold key -> (perfdata label, unit, min, max)
    "commit_p99_warn_ms": ("commit_p99", "ms", 0, None),
    "http_5xx_ratio_warn": ("http_5xx_ratio", "", 0, 1),
    "layer_errors_warn": ("layer_errors", "", 0, None),
}


def perfdata(prefix, readings, thresholds):
    """Perf items of the readings that have a value: '<prefix>_commit_p99'=12.5ms;250;;0 ..."""
    items = []
    for reading in readings:
        if reading.value is None:
            continue
        label, uom, low, high = PERF[reading.name]
        items.append(Perf(f"{prefix}_{label}", round(reading.value, 4), uom,
                          thresholds[reading.name], None, low, high))
    return items
