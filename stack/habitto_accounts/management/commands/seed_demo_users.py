"""`manage.py seed_demo_users`: alice, bob and carol for trying the server out.

Run at every `make run`: creates whichever is missing with one random password, shown
once on the console and kept in STATE_DIR/demo-credentials.txt (mode 0600); when they
all exist it only says where that file is.
"""

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand
from django.db import transaction

from habitto_accounts.credentials import write_private

DEMO_USERS = [("alice", "Alice", "Anderson"), ("bob", "Bob", "Brown"), ("carol", "Carol", "Clark")]
HEADER = "# Habitto chat demo users (development only): username password\n"


def credentials_path():
    return Path(settings.STATE_DIR) / "demo-credentials.txt"


def read_credentials(path):
    if not path.exists():
        return {}
    pairs = (line.split() for line in path.read_text().splitlines() if not line.startswith("#"))
    return {fields[0]: fields[1] for fields in pairs if len(fields) == 2}


class Command(BaseCommand):
    help = "Create the demo users alice, bob and carol (password printed once)."

    def handle(self, *args, **options):
        User = get_user_model()
        path = credentials_path()
        names = [name for name, _, _ in DEMO_USERS]
        existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
        missing = [row for row in DEMO_USERS if row[0] not in existing]
        if not missing:
            where = (
                f"in {path}"
                if path.exists()
                else f"not on file ({path} is missing; use manage.py changepassword)"
            )
            self.stdout.write(f"Demo users {', '.join(names)} already exist; their password is {where}.")
            return

        known = read_credentials(path)
        # Users added later share the password already on file, so one password fits all.
        password = next(iter(known.values()), None) or secrets.token_urlsafe(12)
        hashed = make_password(password)
        with transaction.atomic():
            for username, first_name, last_name in missing:
                User.objects.create(
                    username=username,
                    email=f"{username}@example.com",
                    first_name=first_name,
                    last_name=last_name,
                    password=hashed,
                )
        known.update({username: password for username, _, _ in missing})
        write_private(path, HEADER + "".join(f"{name} {pw}\n" for name, pw in known.items()))
        created = ", ".join(username for username, _, _ in missing)
        self.stdout.write(
            self.style.SUCCESS(f"Created demo users {created} with password: {password}")
            + f"\n(shown only this once; also saved in {path})"
        )
