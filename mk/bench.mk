# The benchmarks (bench/, docs/benchmarks.md), driving the load tester's Locust users.
#   make bench                          quick benchmark (a few minutes, smaller numbers)
#   make bench BENCH_MODE=full          the figures of docs/benchmarks.md
#   make bench BENCH_ARGS="--only latency,queries --postgres"
#   make bench BENCH_ARGS="--only throughput,latency --postgres --redis"   production's PostgreSQL + Redis
#   make bench BENCH_MODE=full BENCH_ARGS="--only throughput --against 50beb95"
#                                       another commit's server in the same run, alternately
# Every throughput figure comes with the bare relay's (bench/relay.py) and the ratio to it.
BENCH_MODE ?= quick
BENCH_ARGS ?=

.PHONY: bench

bench: venv
	$(PY) -m bench.run --mode $(BENCH_MODE) $(BENCH_ARGS)
