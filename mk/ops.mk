# On-call checks (docs/oncall.md): the Fabric tasks of fabfile.py.
#   make health                         every check, hosts from fabric.yml / ONCALL_HOSTS (default: this machine)
#   make health HOSTS=web1,web2         the same on SSH hosts (Fabric's -H)
#   make health ONCALL_ARGS=--json      JSON for a monitoring system
#   make health BACKENDS=3              after `make up BACKENDS=3`: the proxy on 8000/8001 and
#                                       the backends on BACKEND_PORT_BASE (.env, default 18100)
#                                       .. +2 (without BACKENDS `fab health` counts the
#                                       Compose service's containers itself)
#   make oncall-probe / oncall-ports / oncall-redis / oncall-status   the smaller pieces
# make exits 2 whatever the check's status; monitoring should run `fab <task>` itself to
# read the Nagios exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
FAB := $(VENV)/bin/fab
HOSTS ?=
ONCALL_ARGS ?=
FAB_HOSTS = $(if $(HOSTS),-H $(HOSTS))
ENV_BACKEND_PORT_BASE := $(shell sed -n 's/^BACKEND_PORT_BASE=//p' .env 2>/dev/null)
BACKEND_PORT_BASE ?= $(or $(ENV_BACKEND_PORT_BASE),18100)
# A port base from .env, the command line or the environment also serves `fab health`'s
# discovery of the Compose backends (else fabric.yml's backend_port_base).
ONCALL_PORT_BASE_ARG = $(if $(or $(ENV_BACKEND_PORT_BASE),$(filter command line environment,$(origin BACKEND_PORT_BASE))),\
	ONCALL_BACKEND_PORT_BASE=$(BACKEND_PORT_BASE))
# Only a BACKENDS above 1 given by the caller (command line or environment) names backends
# (`make up BACKENDS=1` is the stack without a proxy), and a default set elsewhere must not
# make `make health` after `make run` a proxy check.
ONCALL_BACKENDS_ARG = $(if $(and $(filter-out 0 1,$(BACKENDS)),$(filter command line environment,$(origin BACKENDS))),\
	ONCALL_BACKENDS=$(shell seq -s, -f '127.0.0.1:%.0f' $(BACKEND_PORT_BASE) $$(($(BACKEND_PORT_BASE) + $(BACKENDS) - 1))))

.PHONY: health oncall-probe oncall-ports oncall-redis oncall-status

health: venv
	$(ONCALL_PORT_BASE_ARG) $(ONCALL_BACKENDS_ARG) $(FAB) $(FAB_HOSTS) health $(ONCALL_ARGS)

oncall-probe: venv
	$(FAB) $(FAB_HOSTS) probe $(ONCALL_ARGS)

oncall-ports: venv
	$(FAB) $(FAB_HOSTS) ports $(ONCALL_ARGS)

oncall-redis: venv
	$(FAB) $(FAB_HOSTS) redis-ping $(ONCALL_ARGS)

oncall-status: venv
	$(FAB) $(FAB_HOSTS) status $(ONCALL_ARGS)
