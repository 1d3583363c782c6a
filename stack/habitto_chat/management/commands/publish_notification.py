"""`manage.py publish_notification --user ID --kind KIND --message TEXT [--title T] [--data JSON]`:
publish one notification from outside the server (a cron job, another service's hook),
through the same action as server-side code (docs/notifications.md). Prints the stored
notification as JSON.

Live delivery from this process needs the shared channel layer (Redis): the servers'
sockets then get it at once. Without it the notification is stored and the app sees it
on its next fetch of /api/notifications/.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from habitto_chat import wire
from habitto_chat.actions import do_publish_notification
from habitto_chat.errors import ChatError


class Command(BaseCommand):
    help = "Store a notification for one user and deliver it to their open sockets."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="the recipient's user id")
        parser.add_argument("--kind", default="general", help="property_like, match_accepted, "
                            "match_accepted_by_owner, or any other kind (a general frame); default general")  # fmt: skip
        parser.add_argument("--message", required=True, help="the text the notifications page shows")
        parser.add_argument("--title", default="", help="optional title (the app shows its own default without)")
        parser.add_argument("--data", default="{}", help="a JSON object: the kind's frame fields and any extras")

    def handle(self, *args, **options):
        try:
            data = json.loads(options["data"])
        except ValueError as exc:
            raise CommandError(f"--data is not JSON: {exc}") from None
        try:
            notification = do_publish_notification(
                options["user"], options["kind"], options["message"], title=options["title"], data=data
            )
        except ChatError as error:
            raise CommandError(f"{error.message} ({error.code})") from None
        self.stdout.write(wire.dumps(wire.notification_dict(notification)))
