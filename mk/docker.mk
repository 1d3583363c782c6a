# The full stack in Docker Compose (compose.yaml; docs/docker.md).
#   make docker-bootstrap   engine + Compose v2 + local base images (Debian host, root)
#   make up                 create .env if missing (fresh secrets), build the image,
#                           start everything, wait until healthy
#   make logs / make down   follow the logs / stop and remove the containers (data kept)
COMPOSE ?= docker compose
# Seconds `make up` waits for every service to be healthy (migrate: exited 0).
UP_TIMEOUT ?= 240

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
	$(COMPOSE) up --detach --wait --wait-timeout $(UP_TIMEOUT) --remove-orphans
	@$(COMPOSE) ps
	@echo "Backend: WebSockets ws://127.0.0.1:$${BACKEND_WS_PORT:-$$(sed -n 's/^BACKEND_WS_PORT=//p' .env 2>/dev/null | grep . || echo 8000)}," \
	      "HTTP http://127.0.0.1:$${BACKEND_HTTP_PORT:-$$(sed -n 's/^BACKEND_HTTP_PORT=//p' .env 2>/dev/null | grep . || echo 8001)}"

down:
	$(COMPOSE) down --remove-orphans

logs:
	$(COMPOSE) logs --follow --tail 200

ps:
	$(COMPOSE) ps --all
