from django.apps import AppConfig


class HabittoChatRealtimeConfig(AppConfig):
    """The sockets of the chat: at start-up the hub subscribes to the actions' events and
    adds its channel-layer check to /readyz. Installed beside `habitto_chat`; a host
    project that wants the REST API only leaves it out."""

    name = "habitto_chat.realtime"
    label = "habitto_chat_realtime"
    verbose_name = "Habitto chat sockets"

    def ready(self):
        from .. import events, health
        from .hub import hub

        events.subscribe(hub.publish)
        health.add_readiness_check("channel_layer", hub.check_channel_layer)
