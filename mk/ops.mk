# On-call checks (docs/oncall.md): the Fabric tasks of fabfile.py.
#   make health                         every check, hosts from fabric.yml / ONCALL_HOSTS (default: this machine)
#   make health HOSTS=web1,web2         the same on SSH hosts (Fabric's -H)
#   make health ONCALL_ARGS=--json      JSON for a monitoring system
#   make oncall-probe / oncall-ports / oncall-redis / oncall-status   the smaller pieces
# make exits 2 whatever the check's status; monitoring should run `fab <task>` itself to
# read the Nagios exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
FAB := $(VENV)/bin/fab
HOSTS ?=
ONCALL_ARGS ?=
FAB_HOSTS = $(if $(HOSTS),-H $(HOSTS))

.PHONY: health oncall-probe oncall-ports oncall-redis oncall-status

health: venv
	$(FAB) $(FAB_HOSTS) health $(ONCALL_ARGS)

oncall-probe: venv
	$(FAB) $(FAB_HOSTS) probe $(ONCALL_ARGS)

oncall-ports: venv
	$(FAB) $(FAB_HOSTS) ports $(ONCALL_ARGS)

oncall-redis: venv
	$(FAB) $(FAB_HOSTS) redis-ping $(ONCALL_ARGS)

oncall-status: venv
	$(FAB) $(FAB_HOSTS) status $(ONCALL_ARGS)
