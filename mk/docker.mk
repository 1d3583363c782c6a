# The full stack in Docker Compose (compose.yaml; docs/docker.md).
#   make docker-bootstrap   engine + Compose v2 + local base images (Debian host, root)
#   make up                 build the image, start everything, wait until healthy
#   make logs / make down   follow the logs / stop and remove the containers (data kept)
COMPOSE ?= docker compose
# Seconds `make up` waits for every service to be healthy (migrate: exited 0).
UP_TIMEOUT ?= 240

.PHONY: docker-bootstrap docker-check-env docker-build up down logs ps

docker-bootstrap:
	@if [ "$$(id -u)" = 0 ]; then ops/bootstrap-docker.sh; else sudo ops/bootstrap-docker.sh; fi

docker-check-env:
	@if [ ! -f .env ] && [ -z "$${SECRET_KEY:-}" ]; then \
		echo "No .env: cp .env.example .env, then set SECRET_KEY and POSTGRES_PASSWORD (see the comments in it)." >&2; \
		exit 1; \
	fi

docker-build: docker-check-env
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
