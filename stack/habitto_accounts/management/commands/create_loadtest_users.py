"""`manage.py create_loadtest_users --count N`: many accounts for the load tester, fast.

One password hash is computed once and shared, users and profiles are bulk-inserted,
so hundreds of users take well under a second. Running it again resets the same users
to the given password. Prints (or writes with --output, mode 0600) the credentials as
JSON: [{"id", "username", "password"}, ...]. `--delete` removes them again.
"""

import json
import re
import secrets
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from habitto_accounts.credentials import write_private
from habitto_accounts.models import Profile

CHUNK = 500  # rows per INSERT / ids per IN (...) query
MAX_COUNT = 100_000


def _chunks(items, size=CHUNK):
    for index in range(0, len(items), size):
        yield items[index : index + size]


def _ids_by_username(User, names):
    found = {}
    for chunk in _chunks(names):
        found.update(User.objects.filter(username__in=chunk).values_list("username", "pk"))
    return found


class Command(BaseCommand):
    help = "Create (or reset) N load-test users sharing one password; print their credentials as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, help="how many users")
        parser.add_argument("--prefix", default="loadtest", help="username prefix (default: loadtest)")
        parser.add_argument("--password", help="shared password (random when omitted)")
        parser.add_argument("--output", help="write the JSON here (mode 0600) instead of stdout")
        parser.add_argument("--start", type=int, default=1, help="first number (default: 1)")
        parser.add_argument("--delete", action="store_true", help="delete the users with this prefix")

    def handle(self, *args, count, prefix, password, output, start, delete, **options):
        if not re.fullmatch(r"[\w.@+-]{1,100}", prefix):
            raise CommandError("--prefix must be 1-100 letters, digits or . @ + - _")
        User = get_user_model()
        if delete:
            self.delete(User, prefix)
            return
        if count is None or not 1 <= count <= MAX_COUNT:
            raise CommandError(f"--count must be between 1 and {MAX_COUNT}")
        if start < 0:
            raise CommandError("--start must be 0 or more")

        password = password or secrets.token_urlsafe(12)
        names = [f"{prefix}{number}" for number in range(start, start + count)]
        by_name, created, reset = self.upsert(User, prefix, names, make_password(password))
        credentials = [{"id": by_name[name], "username": name, "password": password} for name in names]
        text = "[\n" + ",\n".join(json.dumps(item) for item in credentials) + "\n]\n"  # a line each
        summary = f"{created} load-test users created, {reset} reset to the shared password."
        if output:
            write_private(output, text)
            self.stdout.write(f"{summary} Credentials written to {output}.")
        else:
            self.stdout.write(text, ending="")
            sys.stderr.write(summary + "\n")  # stdout stays pure JSON

    @transaction.atomic
    def upsert(self, User, prefix, names, hashed):
        """Create the missing users, reset the others; ({username: id}, created, reset)."""
        existing = _ids_by_username(User, names)
        for chunk in _chunks(list(existing.values())):
            User.objects.filter(pk__in=chunk).update(password=hashed, is_active=True)
        new_users = [
            User(username=name, password=hashed, first_name="Load test", last_name=name[len(prefix) :])
            for name in names
            if name not in existing
        ]
        User.objects.bulk_create(new_users, batch_size=CHUNK)
        # bulk_create skips the post_save signal, so the profiles are created here.
        by_name = _ids_by_username(User, names)
        user_ids = list(by_name.values())
        with_profile = set()
        for chunk in _chunks(user_ids):
            with_profile.update(Profile.objects.filter(user_id__in=chunk).values_list("user_id", flat=True))
        Profile.objects.bulk_create(
            [Profile(user_id=pk) for pk in user_ids if pk not in with_profile], batch_size=CHUNK
        )
        return by_name, len(new_users), len(existing)

    def delete(self, User, prefix):
        # Exactly prefix + digits, so "loadtest" never takes a real "loadtester" with it.
        doomed = User.objects.filter(
            username__regex=rf"^{re.escape(prefix)}[0-9]+$", is_staff=False, is_superuser=False
        )
        with transaction.atomic():
            deleted = doomed.count()
            doomed.delete()
        self.stdout.write(f"Deleted {deleted} load-test users with prefix {prefix!r}.")
