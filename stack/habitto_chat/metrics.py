"""The chat's Prometheus metrics (prometheus_client, the process's default registry).

Defined once here so every layer counts into the same objects: the batcher and hub per
batch, the consumers per socket, the throttles per refusal, the server's middleware per
HTTP response. Label values are bounded sets (kinds, close codes, URL patterns), never
ids or raw paths. Each process exposes its own registry (every port of a process serves
the same one); what each metric means and which alerts read it: docs/metrics.md.
"""

from prometheus_client import Counter, Gauge, Histogram

SOCKETS_OPEN = Gauge(
    "habitto_chat_sockets_open", "Chat sockets open in this process.", ["kind", "protocol"]
)
HANDSHAKES_REFUSED = Counter(
    "habitto_chat_handshakes_refused_total", "Socket handshakes refused, by close code.", ["code"]
)
MESSAGES_STORED = Counter(
    "habitto_chat_messages_stored_total",
    "Messages committed by this process (REST and socket sends; a retried client_id is not counted again).",
)
BATCH_SIZE = Histogram(
    "habitto_chat_batch_size_messages",
    "Socket sends per group-commit batch.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
BATCH_COMMIT_SECONDS = Histogram(
    "habitto_chat_batch_commit_seconds",
    "Time to store one group-commit batch (the transaction, on the writer thread).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DELIVERY_SECONDS = Histogram(
    "habitto_chat_delivery_seconds",
    "From commit to the frames being in the sockets' outboxes, per delivered batch; "
    "path=local (this process committed) or remote (through the channel layer).",
    ["path"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LAYER_PUBLISH_ERRORS = Counter(
    "habitto_chat_layer_publish_errors_total", "Batches the channel layer failed to publish to the other processes."
)
LAYER_RECEIVE_ERRORS = Counter(
    "habitto_chat_layer_receive_errors_total",
    "Failures of this process's channel-layer subscription (each one may have dropped other processes' events).",
)
LAYER_RECONNECTS = Counter(
    "habitto_chat_layer_reconnects_total",
    "Times the channel layer was confirmed working again after a failure (then gaps are repaired).",
)
GAP_MESSAGES_REPLAYED = Counter(
    "habitto_chat_gap_messages_replayed_total",
    "Messages delivered to this process's sockets from the database after a channel-layer gap.",
)
GAP_REPAIRS_TRUNCATED = Counter(
    "habitto_chat_gap_repairs_truncated_total",
    "Gap repairs that hit their bound (time window or message count); clients refetch the rest.",
)
PRESENCE_REDIS_ERRORS = Counter(
    "habitto_chat_presence_redis_errors_total",
    "Presence calls to Redis that failed or timed out (presence then shows what this process knows).",
)
RATE_LIMITED = Counter(
    "habitto_chat_rate_limited_total",
    "Refused for rate: socket frames (kind=frame) and REST requests (kind=request, by throttle scope).",
    ["kind", "scope"],
)
HTTP_RESPONSES = Counter(
    "habitto_http_responses_total",
    "HTTP responses by URL pattern (not the raw path) and status code.",
    ["route", "status"],
)

# Children bound once: .labels() takes a lock and a dict lookup per call.
RATE_LIMITED_FRAMES = RATE_LIMITED.labels("frame", "chat_send")
LOCAL_DELIVERY = DELIVERY_SECONDS.labels("local")
REMOTE_DELIVERY = DELIVERY_SECONDS.labels("remote")
