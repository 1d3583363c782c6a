"""Log filters: access tokens never reach a log line; a repeating error is logged once
per interval, with a count of what was suppressed."""

import logging
import re
import time

# ?token=..., &access=..., Authorization values: anything that authenticates.
_SECRET_QUERY = re.compile(r"((?:^|[?&;])(?:token|access|refresh|access_token)=)[^&\s\"']*", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)


def redact(text):
    return _BEARER.sub(r"\1[redacted]", _SECRET_QUERY.sub(r"\1[redacted]", text))


class RedactTokens(logging.Filter):
    """Rewrites the message and its arguments (uvicorn passes the path as an argument)."""

    def filter(self, record):
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


class OncePerInterval(logging.Filter):
    """Lets the same message (logger + text) through at most once per `seconds`."""

    def __init__(self, seconds=60):
        super().__init__()
        self.seconds = seconds
        self._last = {}  # (logger, message template) -> (time let through, suppressed)

    def filter(self, record):
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last, suppressed = self._last.get(key, (None, 0))
        if last is not None and now - last < self.seconds:
            self._last[key] = (last, suppressed + 1)
            return False
        if suppressed:
            record.msg = f"{record.msg} (and {suppressed} more like it in the last {self.seconds}s)"
        self._last[key] = (now, 0)
        return True
