"""Check results: a status (the monitoring-plugins four), one line of text and perfdata.

Statuses are the exit codes Nagios, Icinga and Sensu read: 0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN. When results are combined the worst one wins, in the order
CRITICAL > WARNING > UNKNOWN > OK (monitoring-plugins' max_state_alt): a host that could
not be checked does not hide another host that is down.
"""

from dataclasses import dataclass, field
from enum import IntEnum


class Status(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def severity(self):
        return _SEVERITY[self]


_SEVERITY = {Status.OK: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.CRITICAL: 3}


def worst(statuses):
    """The combined status of several results (OK when there are none)."""
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


@dataclass(frozen=True)
class Perf:
    """One perfdata item: 'label'=value[UOM];warn;crit;min;max."""

    label: str
    value: float
    uom: str = ""
    warn: float | None = None
    crit: float | None = None
    min: float | None = None
    max: float | None = None

    def render(self):
        def num(x):
            return "" if x is None else f"{x:g}" if isinstance(x, float) else str(x)

        tail = ";".join(num(x) for x in (self.warn, self.crit, self.min, self.max)).rstrip(";")
        label = self.label.replace("'", "_")
        text = f"'{label}'={num(round(self.value, 3) if isinstance(self.value, float) else self.value)}{self.uom}"
        return f"{text};{tail}" if tail else text

    def as_dict(self):
        return {k: v for k, v in self.__dict__.items() if v is not None and v != ""}


@dataclass
class Result:
    """What one check found on one host."""

    check: str  # stable name, e.g. "port-ws", "readiness"
    status: Status
    text: str  # one line for a person at night
    perfdata: list = field(default_factory=list)
    applicable: bool = True  # False: the check does not apply here (e.g. no Docker)
    host: str = ""

    def __post_init__(self):
        self.status = Status(self.status)
        self.text = " ".join(str(self.text).split())  # always one line

    @property
    def status_label(self):
        return "N/A" if not self.applicable else self.status.name

    def as_dict(self):
        return {
            "host": self.host,
            "check": self.check,
            "status": self.status.name,
            "code": int(self.status),
            "applicable": self.applicable,
            "text": self.text,
            "perfdata": [p.as_dict() for p in self.perfdata],
        }


def ok(check, text, *perf):
    return Result(check, Status.OK, text, list(perf))


def warning(check, text, *perf):
    return Result(check, Status.WARNING, text, list(perf))


def critical(check, text, *perf):
    return Result(check, Status.CRITICAL, text, list(perf))


def unknown(check, text, *perf):
    return Result(check, Status.UNKNOWN, text, list(perf))


def not_applicable(check, text):
    return Result(check, Status.OK, text, [], applicable=False)


def ms(seconds):
    """Seconds -> milliseconds, rounded for display."""
    return round(seconds * 1000.0, 1)
