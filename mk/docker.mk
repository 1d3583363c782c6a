# The full stack in Docker Compose (compose.yaml; docs/docker.md).
#   make docker-bootstrap   engine + Compose v2 + local base images (Debian host, root)
#   make up                 create .env if missing (fresh secrets), build the image,
#                           start everything, wait until healthy
#   make up BACKENDS=3      three backend containers behind nginx on 8000/8001 (profile `scaled`)
#   make up MONITORING=1    plus Prometheus scraping every backend (profile `monitoring`)
#   make logs / make down   follow the logs / stop and remove the containers of every profile (data kept)
COMPOSE ?= docker compose
# Seconds `make up` waits for every service to be healthy (migrate: exited 0).
UP_TIMEOUT ?= 240
# Backend containers: 1 = backend-ws and backend-http on 8000/8001 as they are; N > 1 = the
# `scaled` profile, N replicas of `backend` behind the nginx `proxy` that owns 8000/8001.
BACKENDS ?= 1
# Non-empty: add the `monitoring` profile (Prometheus on PROMETHEUS_PORT, default 19090).
MONITORING ?=
export BACKENDS
SCALED := $(shell [ "$(BACKENDS)" -gt 1 ] 2>/dev/null && echo 1)
UP_PROFILES := $(if $(SCALED),--profile scaled) $(if $(MONITORING),--profile monitoring)
# Named explicitly, so the other layout's backends are not started.
UP_SERVICES := redis postgres migrate $(if $(SCALED),backend proxy,backend-ws backend-http) $(if $(MONITORING),prometheus)
# What an earlier `make up` of another layout may have left running: removed first (the
# other backends hold the same ports; a Prometheus left behind would scrape the old layout).
NOT_WANTED := $(if $(SCALED),backend-ws backend-http,backend proxy) $(if $(MONITORING),,prometheus)

.PHONY: docker-bootstrap docker-env docker-images docker-build up down logs ps

docker-bootstrap:
	@if [ "$$(id -u)" = 0 ]; then ops/bootstrap-docker.sh; else sudo ops/bootstrap-docker.sh; fi

# A fresh clone has no .env: make one from .env.example with new random secrets (0600).
docker-env:
	@ops/create-env.sh .env .env.example

# Only a hint: Compose pulls what is missing, which fails where no registry is reachable.
docker-images: docker-env
	@missing=$$(command -v python3 >/dev/null && python3 ops/compose_images.py --missing 2>/dev/null) || true; \
	if [ -n "$$missing" ]; then \
		echo "Not in the local engine (Compose will try to pull them): $$(echo $$missing)." >&2; \
		echo "Without registry access run 'make docker-bootstrap' first (it builds local stand-ins)." >&2; \
	fi

docker-build: docker-env docker-images
	$(COMPOSE) build

up: docker-build
	@case "$(BACKENDS)" in ''|*[!0-9]*|0) echo "BACKENDS must be a whole number >= 1, got '$(BACKENDS)'" >&2; exit 2;; esac
	$(COMPOSE) --profile '*' rm --stop --force $(NOT_WANTED)
	$(COMPOSE) $(UP_PROFILES) up --detach --wait --wait-timeout $(UP_TIMEOUT) \
		$(if $(SCALED),--scale backend=$(BACKENDS)) $(UP_SERVICES)
	@$(COMPOSE) $(UP_PROFILES) ps
	@echo "Backend: WebSockets ws://127.0.0.1:$${BACKEND_WS_PORT:-$$(sed -n 's/^BACKEND_WS_PORT=//p' .env 2>/dev/null | grep . || echo 8000)}," \
	      "HTTP http://127.0.0.1:$${BACKEND_HTTP_PORT:-$$(sed -n 's/^BACKEND_HTTP_PORT=//p' .env 2>/dev/null | grep . || echo 8001)}"
	@$(if $(SCALED),echo "  through nginx to $(BACKENDS) backends: one port each from BACKEND_PORT_BASE (default 18100)")
	@$(if $(MONITORING),echo "Prometheus: http://127.0.0.1:PROMETHEUS_PORT (default 19090); every backend at /targets")

down:
	$(COMPOSE) --profile '*' down --remove-orphans

logs:
	$(COMPOSE) --profile '*' logs --follow --tail 200

ps:
	$(COMPOSE) --profile '*' ps --all
