"""Accounts for a run: provisioned up front, handed out in deterministic pairs, cleaned up.

Locally (the load tester started the server, or has the repository and database):
    manage.py create_loadtest_users --count N --prefix P --password PW --output FILE
Against any other deployment, through the public API only (no shell on the server):
    POST /api/users/ for each account; cleanup clears the run's conversations.

An accounts file is JSON: [{"id", "username", "password"}, ...]; accounts 2k and 2k+1 form
conversation k.
"""

import json
import os
import secrets
from pathlib import Path

from habitto_client import ChatError, ChatHTTP, HTTPStatusError
from habitto_server.processes import manage


def new_prefix():
    return f"lt{secrets.token_hex(3)}u"


def new_password():
    return "Lt-" + secrets.token_urlsafe(12)


def provision_local(count, prefix, password, output, env=None, timeout=300, python=None):
    """The bulk command (one password hash, bulk inserts); returns the accounts list.
    `python`: the server's interpreter when it is not this one (processes.manage)."""
    manage(env, "create_loadtest_users", "--count", str(count), "--prefix", prefix, "--password", password,
           "--output", str(output), timeout=timeout, python=python)
    return load(output)


def provision_api(http_base, count, prefix, password, timeout=10):
    """Register `count` accounts through POST /api/users/ (no shell access needed)."""
    api = ChatHTTP(http_base, timeout=timeout)
    accounts = []
    for number in range(1, count + 1):
        username = f"{prefix}{number}"
        try:
            data = api.register(username, password, first_name="Load test", last_name=str(number))
        except HTTPStatusError as exc:
            raise RuntimeError(f"registering {username} failed: {exc} {exc.body}") from None
        user_id = data.get("id") if isinstance(data, dict) else None
        accounts.append({"id": user_id, "username": username, "password": password})
    return accounts


def save(accounts, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(accounts, handle, indent=1)


def load(path):
    with open(path) as handle:
        accounts = json.load(handle)
    if not isinstance(accounts, list) or not all({"username", "password"} <= set(a) for a in accounts):
        raise ValueError(f"{path}: expected a JSON list of {{username, password}} objects")
    return accounts


def slices(accounts, parts):
    """Split the pairs among `parts` processes, deterministically (pair k -> process k % parts)."""
    pairs = [accounts[i : i + 2] for i in range(0, len(accounts) - 1, 2)]
    return [[account for pair in pairs[k::parts] for account in pair] for k in range(parts)]


def with_tokens(http_base, accounts, timeout=30):
    """The accounts with an access and refresh token each, logged in once through the API:
    capacity steps that reuse them skip the logins, which cost the server a
    password hash each. Access tokens live ACCESS_TOKEN_MINUTES (60 by default)."""
    api = ChatHTTP(http_base, timeout=timeout)
    issued = []
    for account in accounts:
        if account.get("access"):
            issued.append(account)
            continue
        session = api.login(account["username"], account["password"])
        issued.append(dict(account, access=session.access, refresh=session.refresh))
    return issued


def clear_conversations(http_base, accounts, timeout=10, group=2):
    """Cleanup through the API: both sides clear each pair's conversation (group > 2: every
    account clears every conversation it has). Returns failures."""
    api = ChatHTTP(http_base, timeout=timeout)
    failures = 0
    if group > 2:
        for account in accounts:
            try:
                session = api.login(account["username"], account["password"])
                for conversation in api.conversations(session, page_size=100)["results"]:
                    api.clear_conversation(session, conversation["counterpart"]["id"])
            except ChatError:
                failures += 1
        return failures
    for i in range(0, len(accounts) - 1, 2):
        try:
            a, b = api.login(accounts[i]["username"], accounts[i]["password"]), None
            b = api.login(accounts[i + 1]["username"], accounts[i + 1]["password"])
            api.clear_conversation(a, b.user_id)
            api.clear_conversation(b, a.user_id)
        except ChatError:
            failures += 1
    return failures
