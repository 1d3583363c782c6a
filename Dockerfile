# The chat backend image: one uvicorn process serving HTTP and WebSocket on $PORTS.
#
#   make up                      # or: docker compose build (the base image comes from .env)
#   docker build --network host --build-arg BASE_IMAGE="$PYTHON_BASE_IMAGE" -t habitto-chat .
#
# Multi-stage: the builder installs the pinned requirements/base.txt into a venv (binary
# wheels only, so no compiler is needed), then the project itself (`pip install .`, the
# habitto_* packages of stack/, as `make venv` does in editable mode); the final stage gets
# that venv (pip compiled it), stack/manage.py and docker/, nothing else. No secrets are
# baked in: SECRET_KEY, DATABASE_URL, REDIS_URL, ... come from the environment at run time
# (see .env.example and docs/docker.md). With DEBUG off (the default) the server refuses
# to start without SECRET_KEY and ALLOWED_HOSTS.
# No default: the base image's name is written once, in .env.example (PYTHON_BASE_IMAGE),
# and compose.yaml passes it.
ARG BASE_IMAGE

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
COPY requirements/base.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --only-binary=:all: -r /tmp/requirements.txt
COPY pyproject.toml /src/pyproject.toml
COPY stack/ /src/stack/
RUN /opt/venv/bin/pip install --no-deps /src \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && find /opt/venv -name '*.po' -delete

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="habitto-chat" \
      org.opencontainers.image.description="Habitto chat backend (Django + Channels on uvicorn)"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=habitto_server.settings \
    STATE_DIR=/app/var \
    HOST=0.0.0.0 \
    PORTS=8000
RUN groupadd --system --gid 10001 chat \
 && useradd --system --uid 10001 --gid chat --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin chat \
 && mkdir -p /app/var/media \
 && chown -R chat:chat /app/var
COPY --from=builder /opt/venv /opt/venv
COPY stack/manage.py /app/stack/manage.py
COPY docker/ /app/docker/
WORKDIR /app
USER 10001:10001
EXPOSE 8000 8001
# Liveness of the first port in $PORTS, or of the port named in $PORT_FILE when the server
# picks one of a range (PORT_BASE, the scaled stack). No curl in the image; Python is.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["python", "-c", "import os, urllib.request as u; h = os.environ.get('HOST') or '127.0.0.1'; h = '127.0.0.1' if h in ('0.0.0.0', '::') else h; h = f'[{h}]' if ':' in h else h; f = os.environ.get('PORT_FILE'); p = open(f).read().strip() if f else os.environ.get('PORTS', '8000').split(',')[0].strip(); u.urlopen(f'http://{h}:{p}/healthz', timeout=4)"]
CMD ["python", "-m", "habitto_server.serve"]
