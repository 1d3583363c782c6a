"""Strict parsers of text into values, one per kind, shared by settings, API parameters
and the server's entry point (pure Python: settings import it before Django is set up).

Each raises ValueError with a short reason; callers turn that into their own error (a
400 envelope, ImproperlyConfigured, an argparse error) with their own wording.
"""

import json
import math
from datetime import datetime

# Enough for every 64-bit id, with room for a leading zero; bounded because int() of a
# long digit string costs quadratic time (and refuses more than 4,300 digits).
MAX_DIGITS = 20
MAX_ID = 2**63 - 1  # the largest BigAutoField id

# Deepest nesting of arrays and objects accepted in a JSON body or frame: what the API and
# the protocol use is two levels deep.
MAX_JSON_DEPTH = 32

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_int(text, minimum=None, maximum=None):
    """A non-negative decimal integer: ASCII digits only (str.isdigit() accepts "²" and
    "٣", which int() refuses or reads), at most MAX_DIGITS, then the range check.
    Whitespace is refused too; callers that allow it around the number strip first."""
    if not (text and len(text) <= MAX_DIGITS and text.isascii() and text.isdigit()):
        raise ValueError(f"not an integer: {text[:MAX_DIGITS + 5]!r}")
    return check_range(int(text), minimum, maximum)


def check_range(number, minimum=None, maximum=None):
    if minimum is not None and number < minimum:
        raise ValueError(f"{number} is less than {minimum}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{number} is more than {maximum}")
    return number


def parse_float(text, minimum=None):
    """A finite decimal number ("nan" and "inf" would pass every range check)."""
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text.strip()[:30]!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {text.strip()!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{number} is less than {minimum}")
    return number


def parse_bool(text):
    """1/true/yes/on or 0/false/no/off, any case; anything else is an error."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"not a boolean (1/0, true/false, yes/no, on/off): {text!r}")


def parse_port(text):
    try:
        return parse_int(text.strip(), 1, 65535)
    except ValueError:
        raise ValueError(f"not a TCP port: {text.strip()!r}") from None


def parse_ports(text):
    """A comma-separated list of TCP ports, at least one ("8000,8001")."""
    ports = [parse_port(item) for item in text.split(",") if item.strip()]
    if not ports:
        raise ValueError("no port given")
    return ports


MAX_CURSOR_CHARS = 40  # an ISO timestamp with microseconds and offset is 32


def parse_cursor(text):
    """A device socket's sync cursor (wire.sync_cursor): an ISO 8601 time with its UTC
    offset or `Z`, as an aware datetime. A time without offset is refused: it would be
    read in the server's time zone."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_CURSOR_CHARS or not text.isascii():
        raise ValueError("not a cursor")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a cursor: {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"a cursor without a UTC offset: {text!r}")
    return moment


class JSONTooDeep(ValueError):
    pass


def loads_json(text, max_depth=MAX_JSON_DEPTH, **options):
    """json.loads with its nesting bounded: JSONTooDeep (a ValueError) for arrays/objects
    nested deeper than `max_depth`. The C decoder itself stops at the interpreter's
    recursion limit (RecursionError, turned into JSONTooDeep here), so 10,000 `[` cost
    nothing; anything it did parse is then measured, unless the text has too few brackets
    to be that deep (the common case, two C-speed counts)."""
    try:
        value = json.loads(text, **options)
    except RecursionError:
        raise JSONTooDeep(f"nested deeper than {max_depth} levels") from None
    check_json_depth(text, value, max_depth)
    return value


def check_json_depth(text, value, max_depth=MAX_JSON_DEPTH):
    """JSONTooDeep if `value`, parsed from `text` (str or bytes), nests deeper than
    `max_depth`. Measured level by level, without recursion."""
    opening = (b"[", b"{") if isinstance(text, (bytes, bytearray)) else ("[", "{")
    if text.count(opening[0]) + text.count(opening[1]) <= max_depth:
        return
    level = [value] if isinstance(value, (list, dict)) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise JSONTooDeep(f"nested deeper than {max_depth} levels")
        level = [
            item
            for container in level
            for item in (container.values() if isinstance(container, dict) else container)
            if isinstance(item, (list, dict))
        ]
