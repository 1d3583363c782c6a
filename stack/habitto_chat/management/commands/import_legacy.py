"""`manage.py import_legacy --source postgres://...`: bring the old habitto_bk backend's
users, messages and notifications over at the cut-over (docs/cutover.md).

Safe to run again: it converges on the source. `--dry-run` does everything in one
transaction and rolls it back, printing what a real run would do.
"""

import psycopg
from django.core.management.base import BaseCommand, CommandError

from habitto_chat.legacy_import import STEPS, LegacyImportError, LegacySource, run_import


def _steps(value):
    steps = [step.strip() for step in value.split(",") if step.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown or not steps:
        raise CommandError(f"--steps takes a comma-separated subset of {','.join(STEPS)}; got {value!r}")
    return [step for step in STEPS if step in steps]  # always in dependency order


class Command(BaseCommand):
    help = "Import the old habitto_bk backend's users, messages and notifications (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--source", required=True, help="URL of the old PostgreSQL database")
        parser.add_argument("--batch-size", type=int, default=2000, help="rows per batch (default 2000)")
        parser.add_argument("--steps", default=",".join(STEPS), help=f"subset of {','.join(STEPS)} (default: all)")
        parser.add_argument("--dry-run", action="store_true", help="do everything, then roll it back")

    def handle(self, *args, source, batch_size, steps, dry_run, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        steps = _steps(steps)
        try:
            legacy = LegacySource(source, batch_size)
        except psycopg.Error as exc:
            raise CommandError(f"cannot read the old database: {exc}".strip()) from exc
        try:
            summaries = run_import(legacy, steps, dry_run=dry_run)
        except LegacyImportError as exc:
            raise CommandError(f"import stopped, nothing of the failing batch was written: {exc}") from exc
        except psycopg.Error as exc:
            raise CommandError(f"reading the old database failed: {exc}".strip()) from exc
        finally:
            legacy.close()
        self.stdout.write("DRY RUN: nothing was written." if dry_run else "Import done.")
        for summary in summaries:
            counts = ", ".join(f"{name}={count}" for name, count in sorted(summary.counts.items()))
            self.stdout.write(f"{summary.name}: {counts or 'nothing to import'}")
