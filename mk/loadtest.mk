# The load tester (docs/loadtest.md) and the benchmarks (docs/benchmarks.md).
#   make loadtest                                  default scenario against a server it starts
#   make loadtest TARGET=http://h:8001 TARGET_WS=ws://h:8000 LOADTEST_SCENARIO=smoke
#   make loadtest LOADTEST_WORKERS=2               one Locust master and two workers
#   make bench                                     quick benchmark (BENCH_MODE=full: the real figures)
LOADTEST_SCENARIO ?= default
LOADTEST_WORKERS ?=
LOADTEST_ARGS ?=
TARGET ?=
TARGET_WS ?=
BENCH_MODE ?= quick
BENCH_ARGS ?=

loadtest: venv
	$(PY) -m loadtests.run --scenario $(LOADTEST_SCENARIO) \
		$(if $(TARGET),--target $(TARGET)) $(if $(TARGET_WS),--target-ws $(TARGET_WS)) \
		$(if $(LOADTEST_WORKERS),--workers $(LOADTEST_WORKERS)) $(LOADTEST_ARGS)

bench: venv
	$(PY) -m loadtests.bench --mode $(BENCH_MODE) $(BENCH_ARGS)
