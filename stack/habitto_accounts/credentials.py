"""Credential files written by the management commands: owner-only (0600) from the
moment they exist, since they hold plain passwords."""

import os
from pathlib import Path


def write_private(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the file may have existed with a wider mode
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
