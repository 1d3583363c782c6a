"""Issue access tokens for provisioned accounts without logging in (benchmarks only).

    STATE_DIR=... DEBUG=1 python -m bench.mint_tokens --accounts in.json --output out.json

Runs with the *server's* settings (same STATE_DIR / SECRET_KEY / database) on the same
machine, so it is for servers the benchmark started itself. Each login costs the server
a password hash (~0.25 s of CPU); 10,000 sockets would need 40 minutes of logins.
"""

import argparse
import json
import os
import sys
from pathlib import Path

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "habitto_server.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    accounts = json.loads(Path(args.accounts).read_text())
    users = get_user_model().objects.in_bulk([a["id"] for a in accounts])
    for account in accounts:
        account["access"] = str(AccessToken.for_user(users[account["id"]]))
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(accounts, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
