"""The benchmark harness (docs/benchmarks.md): `make bench` is `python -m bench.run`.

It drives the load tester's Locust users (loadtests/) against servers it starts itself
(habitto_server.processes); committed results are in bench/results/. Run from the
repository root, like loadtests/ and ops/ (they are not part of the installed package).
"""
