from django.apps import AppConfig
from django.contrib.auth import get_user_model
from django.db.models.signals import post_save


class HabittoChatConfig(AppConfig):
    name = "habitto_chat"
    label = "habitto_chat"
    verbose_name = "Habitto chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from .signals import close_sockets_of_deactivated_user

        post_save.connect(close_sockets_of_deactivated_user, sender=get_user_model(),
                          dispatch_uid="habitto_chat.close_sockets_of_deactivated_user")
