# The load tester, the Locust release gate (docs/loadtest.md).
#   make loadtest                                  default scenario against a server it starts
#   make loadtest TARGET=http://h:8001 TARGET_WS=ws://h:8000 LOADTEST_SCENARIO=smoke
#   make loadtest LOADTEST_WORKERS=2               one Locust master and two workers
#   make loadtest LOADTEST_BASELINE=none           neither compare with nor replace the kept baseline
#   make loadtest LOADTEST_ARGS="--repeat 3"       three runs, compared with the baseline by their spread
#   make loadtest LOADTEST_SCENARIO=capacity LOADTEST_ARGS=--capacity   the highest load that holds
# By default every run is compared with results/baseline/<scenario>_summary.json, the last
# passing run of that scenario, and a passing run replaces it (docs/loadtest.md).
LOADTEST_SCENARIO ?= default
LOADTEST_BASELINE ?= auto
LOADTEST_WORKERS ?=
LOADTEST_ARGS ?=
TARGET ?=
TARGET_WS ?=

.PHONY: loadtest

loadtest: venv
	$(PY) -m loadtests.run --scenario $(LOADTEST_SCENARIO) --baseline $(LOADTEST_BASELINE) \
		$(if $(TARGET),--target $(TARGET)) $(if $(TARGET_WS),--target-ws $(TARGET_WS)) \
		$(if $(LOADTEST_WORKERS),--workers $(LOADTEST_WORKERS)) $(LOADTEST_ARGS)
