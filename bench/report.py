"""Markdown tables from a `make bench` result: python -m bench.report results/bench/full-sqlite/bench.json"""

import json
import sys


def ms(value):
    return "-" if value is None else f"{value:g}"


def table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(report):
    out = []
    m = report["machine"]
    out.append(f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, Linux {m['kernel']}, "
               f"Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
               + f"; open files limit {m['nofile_limit']}. Database: {report.get('database', 'sqlite')}.")
    if "generator" in report:
        out.append("\n### Load generator capacity (Locust against bench/stub_server.py)\n")
        out.append(table(
            ["fan-out", "offered/s", "delivered/s", "p50", "p95", "p99", "max", "send lag p99", "lost"],
            [["room + inbox" if r["inbox"] else "room only", ms(r["offered"]), ms(r["delivered_per_s"]),
              ms(r["complete_p50"]), ms(r["complete_p95"]), ms(r["complete_p99"]), ms(r["complete_max"]),
              ms(r["send_lag_p99"]), r["lost"]] for r in report["generator"]["runs"]]))
    if "throughput" in report:
        runs = report["throughput"]["runs"]
        if runs and "window" in runs[0]:  # before issue 14: Locust's closed loop
            out.append("\n### Throughput (closed loop, one server process)\n")
            out.append(table(
                ["fan-out", "conversations", "window", "sent", "stored", "delivered/s", "p50", "p99", "lost", "dup",
                 "server CPU (cores)", "machine busy (cores)"],
                [[r["label"], r["conversations"], r["window"], r["sent"], r["stored"], ms(r["delivered_per_s"]),
                  ms(r["complete_p50"]), ms(r["complete_p99"]), r["lost"], r["duplicated"], r["server_cpu"],
                  r["machine_busy"]] for r in runs]))
        else:
            out.append("\n### Throughput (bench/flood.py, one server process; the relay beside it)\n")
            out.append(table(
                ["fan-out", "conversations", "target", "round", "sent", "stored", "delivered/s", "p50", "p99",
                 "lost", "dup", "out of order", "server CPU (cores)", "machine busy (cores)"],
                [[r["label"], r["conversations"], r["target"], r["round"] + 1, r["sent"], ms(r["stored"]),
                  ms(r["delivered_per_s"]), ms(r["p50_ms"]), ms(r["p99_ms"]), r["lost"], r["duplicated"],
                  r["out_of_order"], r["server_cpu"], r["machine_busy"]] for r in runs]))
            out.append("\n" + table(
                ["fan-out", "conversations", "target", "mean delivered/s", "x relay", "x base", "x room + inbox",
                 "CPU µs per message", "CPU x room + inbox"],
                [[e["label"], e["conversations"], target, ms(mean), ms(e["ratio_to_relay"].get(target)),
                  ms(e.get("ratio_to_base", {}).get(target)), ms(e.get("ratio_to_legacy", {}).get(target)),
                  ms(e.get("mean_cpu_us_per_message", {}).get(target)),
                  ms(e.get("cpu_ratio_to_legacy", {}).get(target))]
                 for e in report["throughput"]["summary"] for target, mean in e["mean_delivered_per_s"].items()]))
    if "latency" in report:
        out.append("\n### Complete fan-out latency, paced (100 senders; room + inbox: 4 deliveries per message, "
                   "device: ack + 2)\n")
        out.append(table(
            ["offered/s", "sockets", "target", "delivered/s", "p50", "p95", "p99", "max", "send lag p99", "lost",
             "server CPU", "machine busy"],
            [[ms(r["rate"]), r.get("socket_kind", "room+inbox"), r.get("target", "-"), ms(r["delivered_per_s"]),
              ms(r["complete_p50"]), ms(r["complete_p95"]),
              ms(r["complete_p99"]), ms(r["complete_max"]), ms(r["send_lag_p99"]), r["lost"], r["server_cpu"],
              r["machine_busy"]] for r in report["latency"]["runs"]]))
    if "idle" in report:
        out.append("\n### Idle authenticated sockets\n")
        out.append(table(
            ["socket", "permessage-deflate", "sockets", "failed", "handshakes/s", "RSS before (MiB)", "RSS open (MiB)",
             "KiB per socket", "closed by server", "1,000/s meanwhile: p50", "p99", "lost"],
            [[r.get("socket_kind", "inbox"), "on" if r["deflate"] else "off", r["sockets"], r["failed"],
              r["handshakes_per_s"], r["rss_before_mib"], r["rss_open_mib"], r["kib_per_socket"],
              r["closed_by_server"]] + ([ms(r["latency_1000"]["complete_p50"]), ms(r["latency_1000"]["complete_p99"]),
                                         r["latency_1000"]["lost"]] if "latency_1000" in r else ["-", "-", "-"])
             for r in report["idle"]["runs"]]))
    if "queries" in report:
        q = report["queries"]
        s = q["seed"]
        out.append(f"\n### Reads with {s['messages']:,} stored messages ({s['conversations']:,} conversations; "
                   f"the user has {s['user_conversations']:,}"
                   + (f"; database {q['db_mib']} MiB" if q.get("db_mib") else "") + ")\n")
        out.append(table(["request", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "items", "count"],
                         [[c["case"], c["n"], c["p50"], c["p95"], c["p99"], c["max"], ms(c["items"]),
                           ms(c["count"])] for c in q["cases"]]))
    return "\n".join(out)


if __name__ == "__main__":
    print(render(json.load(open(sys.argv[1]))))
