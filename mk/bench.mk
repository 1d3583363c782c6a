# The benchmarks (bench/, docs/benchmarks.md), driving the load tester's Locust users.
#   make bench                          quick benchmark (a few minutes, smaller numbers)
#   make bench BENCH_MODE=full          the figures of docs/benchmarks.md
#   make bench BENCH_ARGS="--only latency,queries --postgres"
BENCH_MODE ?= quick
BENCH_ARGS ?=

.PHONY: bench

bench: venv
	$(PY) -m bench.run --mode $(BENCH_MODE) $(BENCH_ARGS)
