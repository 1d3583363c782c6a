"""The chat app's settings: defaults here, overridden by the host project's
`HABITTO_CHAT = {...}` dict. The app reads no environment variable itself."""

from django.conf import settings

DEFAULTS = {
    "MAX_CONTENT_LENGTH": 4000,  # characters per message
    "MAX_FRAME_BYTES": 65536,  # largest WebSocket frame accepted
    "SEND_RATE_PER_SECOND": 20.0,  # token bucket refill per user
    "SEND_BURST": 40,  # token bucket size per user
    "MAX_SOCKETS_PER_USER": 20,  # per process
    "OUTBOX_FRAMES": 1000,  # frames queued for one slow socket before it is closed
    "SENDS_IN_FLIGHT": 32,  # sends of one socket waiting for their batch before it stops reading
    # Seconds past its expiry that a legacy socket's access token is still honoured
    # (docs/protocol.md); None: simplejwt's REFRESH_TOKEN_LIFETIME.
    "SOCKET_TOKEN_GRACE": None,
    "ALLOWED_ORIGINS": [],  # browser origins allowed to open sockets
    "USER_CARDS": "habitto_chat.users.default_user_cards",  # display name + picture hook
    "REDIS_URL": "",  # checked by /readyz when set
    "REDIS_TIMEOUT": 2.0,
    "LAYER_TIMEOUT": 2.0,  # readiness round trip through the channel layer
    # Presence keys in REDIS_URL's database: one sorted set per user (realtime/presence.py);
    # deployments sharing one Redis database must differ here.
    "PRESENCE_KEY_PREFIX": "habitto-chat:presence:",
    "PAGE_SIZE": 50,
    "MAX_PAGE_SIZE": 100,
    "GAP_REPLAY_SECONDS": 300,  # a channel-layer gap is replayed from the database this far back at most
    "GAP_REPLAY_MESSAGES": 20000,  # and at most this many messages (of all conversations) per repair
    "DELIVERY_DELAY_MS": 0,  # test-only slowdown of live delivery
}


def chat_setting(name):
    return getattr(settings, "HABITTO_CHAT", {}).get(name, DEFAULTS[name])
