from django.apps import AppConfig


class HabittoChatConfig(AppConfig):
    name = "habitto_chat"
    label = "habitto_chat"
    verbose_name = "Habitto chat"
    default_auto_field = "django.db.models.BigAutoField"
