"""App configuration: connects the signal that gives every new user a profile."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "habitto_accounts"
    label = "accounts"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import signals  # noqa: F401  (registers the post_save receiver)
