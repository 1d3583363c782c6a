"""Log filters: access tokens never reach a log line."""

import logging
import re

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
