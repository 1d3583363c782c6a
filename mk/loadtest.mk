# The load tester, the Locust release gate (docs/loadtest.md).
#   make loadtest                                  default scenario against a server it starts
#   make loadtest TARGET=http://h:8001 TARGET_WS=ws://h:8000 LOADTEST_SCENARIO=smoke
#   make loadtest LOADTEST_WORKERS=2               one Locust master and two workers
LOADTEST_SCENARIO ?= default
LOADTEST_WORKERS ?=
LOADTEST_ARGS ?=
TARGET ?=
TARGET_WS ?=

.PHONY: loadtest

loadtest: venv
	$(PY) -m loadtests.run --scenario $(LOADTEST_SCENARIO) \
		$(if $(TARGET),--target $(TARGET)) $(if $(TARGET_WS),--target-ws $(TARGET_WS)) \
		$(if $(LOADTEST_WORKERS),--workers $(LOADTEST_WORKERS)) $(LOADTEST_ARGS)
