"""Run the benchmarks and print the table of results (`python -m bench.run_all`, or `make bench`).

    python -m bench.run_all                      # everything, about 10 minutes
    python -m bench.run_all --quick              # shorter runs and smaller sizes, under 3 minutes
    python -m bench.run_all --only throughput,backlog --databases postgresql
    python -m bench.run_all --scale 0.5          # halve every duration and size

Scenarios: throughput (1), latency (2, 4 and 6: latency, isolation, memory), intake (3), backlog (5), scale (7:
PostgreSQL only, in a database `scale` of its own; `bench/scale.py`, about 45 minutes in full, 5 with --quick).
PostgreSQL: `--pg-url` (default `$BENCH_DATABASE_URL`, else `$TEST_DATABASE_URL`, else
postgresql+psycopg://postgres@127.0.0.1:5432/test); the benchmarks create and use a database `bench` on that
server, one fresh schema per scenario, dropped afterwards. Without a reachable server, PostgreSQL is skipped.

Writes `bench/results/<tag>.json` and `bench/results/<tag>.md` (the table), and PNGs into `docs/`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    DEFAULT_PG_URL,
    REPO,
    ReceiverProcess,
    add_addon_src_option,
    ensure_pg_database,
    log,
    machine,
    postgres_version,
)
from bench.context import Context

SCENARIOS = ("throughput", "latency", "intake", "backlog", "scale")


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def _layout(run: dict[str, Any]) -> str:
    """Where the delivery worker ran: a separate `addon worker`, a thread of `addon serve`'s web process, or a
    child process of `addon serve` (older result files may record the thread layout)."""
    if run["topology"] != "serve":
        return "separate worker"
    return "worker child of serve" if "server_worker_child0" in run.get("memory_peak_kb", {}) else "worker in serve"


def _mark(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def table(results: dict[str, Any]) -> str:
    """The results as a Markdown table: figure, value, baseline, ratio, target, met."""
    rows = ["| # | figure | value | baseline (same run) | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    tp = results.get("throughput")
    if tp:
        ceilings = [r["ceiling"]["per_s"] for r in tp["runs"] if "ceiling" in r] or [tp["ceiling_per_s"]]
        best = max(ceilings)
        for r in tp["runs"]:
            target = r["workers"] == 1
            near = r.get("ceiling", {}).get("per_s", tp["ceiling_per_s"])
            ratio = r["per_s"] / best
            rows.append(f"| 1 | throughput, {r['database']}, {r['workers']} × `addon worker` | {r['per_s']:.0f} "
                        f"deliveries/s | raw ceiling: best of the run {best:.0f}/s (just before: {near:.0f}/s) | "
                        f"{ratio * 100:.0f} % ({r['per_s'] / near * 100:.0f} %) | {'≥ 70 %' if target else '—'} | "
                        f"{_mark(ratio >= 0.7 if target else None)} |")
            if "concurrent_client" in r:
                rows.append(f"| 1 | … the same against the same client with {r['concurrent_client']['threads']} "
                            f"requests in flight (informative) | {r['per_s']:.0f} deliveries/s | concurrent client "
                            f"{r['concurrent_client']['per_s']:.0f}/s | {r['concurrent_ratio'] * 100:.0f} % | — | — |")
    lat = results.get("latency")
    if lat:
        for r in lat["runs"]:
            where = f"{r['database']}, {_layout(r)}"
            s = r["all"]
            if r.get("pair"):
                continue  # the first pair's row carries the figures of every pair (see bench/latency.py)
            if not r["hang"]:
                same = [x["all"] for x in lat["runs"] if not x["hang"] and x["database"] == r["database"]
                        and x["topology"] == r["topology"] and x["all"].get("p99_ms") is not None]
                if len(same) > 1:  # a full run: the medians of its runs, each run beside them
                    p50 = statistics.median(x["p50_ms"] for x in same)
                    p99 = statistics.median(x["p99_ms"] for x in same)
                    each = ", ".join(f"{x['p50_ms']}/{x['p99_ms']}" for x in same)
                    value = f"median of {len(same)} runs: p50 {p50} / p99 {p99} ms (each run's p50/p99: {each})"
                else:
                    p50, p99 = s.get("p50_ms", 1e9), s.get("p99_ms", 1e9)
                    value = f"p50 {p50} / p99 {p99} / max {s.get('max_ms')} ms"
                ok = p50 < 10 and p99 < 50
                rows.append(f"| 2 | latency at {r['rate']:.0f} events/s × 5 webhooks, {where} | {value} | intake "
                            f"answer p50 {r['intake_answer'].get('p50_ms')} ms | — | p50 < 10, p99 < 50 ms | "
                            f"{_mark(ok)} |")
            else:
                ratio = r.get("p99_ratio_vs_healthy_run")
                medians = r.get("p99_medians_ms")
                if medians and len(r.get("p99_ratio_per_pair", [])) > 1:
                    value = f"median p99 of {len(r['p99_ratio_per_pair'])} runs {medians['hang']} ms"
                    baseline = (f"median p99 of as many runs without the hang, {medians['healthy']} ms (each pair: "
                                f"{', '.join(str(x) for x in r['p99_ratio_per_pair'])})")
                else:
                    value = f"p99 {r['w1_w4'].get('p99_ms')} ms (p50 {r['w1_w4'].get('p50_ms')})"
                    baseline = "p99 without the hang"
                rows.append(f"| 4 | isolation, {where}: healthy p99 with one webhook hanging | {value} | {baseline} | "
                            f"{ratio if ratio is not None else '—'} | ≤ 1.20 | "
                            f"{_mark(ratio <= 1.2 if ratio is not None else None)} |")
        for r in lat["runs"]:
            if r["hang"] or r.get("pair"):
                continue
            where = f"{r['database']}, {_layout(r)}"
            for name, peak in r["memory_peak_kb"].items():
                if name == "server_master":
                    continue
                idle = r["memory_idle_kb"].get(name, {}).get("vmrss")
                ratio = f"{peak['vmhwm'] / idle:.2f}" if idle and peak.get("vmhwm") else "—"
                label = {"server_web0": "server (gunicorn web process)", "worker0": "`addon worker`",
                         "server_worker_child0": "`addon serve`'s worker child"}.get(name, name)
                rows.append(f"| 6 | peak RSS during (2), {where}: {label} | {peak.get('vmhwm', 0) / 1024:.0f} MiB | "
                            f"RSS idle before the run {(idle or 0) / 1024:.0f} MiB | {ratio} | — | — |")
    intake = results.get("intake")
    if intake:
        for r in intake["runs"]:
            rows.append(f"| 3 | intake, {r['database']} (`addon serve`, 8 connections) | {r['intake_per_s']:.0f} "
                        f"events/s | trivial Flask route {r['trivial_per_s']:.0f}/s | {r['ratio'] * 100:.0f} % | "
                        f"≥ 50 % | {_mark(r['ratio'] >= 0.5)} |")
    backlog = results.get("backlog")
    if backlog:
        for r in backlog["runs"]:
            small, big = r["sizes"]
            batch = r.get("batch", 16)  # results files from before the batch was recorded: 16
            rows.append(f"| 5 | claim a batch of {batch}, {r['database']}, {big['deliveries']:,} waiting | "
                        f"{big['claim']['median_ms']} ms | {small['deliveries']:,} waiting: "
                        f"{small['claim']['median_ms']} ms | {r['claim_ratio']} | < 1.5 | "
                        f"{_mark(r['claim_ratio'] < 1.5)} |")
            busy_big, busy_small = big["claim_one_webhook_busy"], small["claim_one_webhook_busy"]
            rows.append(f"| 5 | … with one webhook at its in-flight bound | {busy_big['median_ms']}"
                        f" ms | {busy_small['median_ms']} ms | {r['claim_busy_ratio']} | < 1.5 | "
                        f"{_mark(r['claim_busy_ratio'] < 1.5)} |")
            rows.append(f"| 5 | `next_due_in` (idle dispatcher) | {big['next_due_in']['median_ms']} ms | "
                        f"{small['next_due_in']['median_ms']} ms | {r['next_due_in_ratio']} | — | — |")
        for r in backlog.get("busy_ahead", []):
            small, big = r["sizes"]
            claim_big, claim_small = big["claim_one_webhook_busy"], small["claim_one_webhook_busy"]
            due_big, due_small = big["next_due_in_one_webhook_busy"], small["next_due_in_one_webhook_busy"]
            rows.append(f"| 5 | claim a batch of {r['batch']}, {r['database']}, one busy webhook's "
                        f"{big['busy_ahead']:,} older due deliveries ahead of 1,000 | {claim_big['median_ms']} ms | "
                        f"{small['busy_ahead']:,} ahead: {claim_small['median_ms']} ms | {r['claim_ratio']} | < 1.5 | "
                        f"{_mark(r['claim_ratio'] < 1.5)} |")
            rows.append(f"| 5 | … `next_due_in` with that webhook busy | {due_big['median_ms']} ms | "
                        f"{due_small['median_ms']} ms | {r['next_due_in_ratio']} | — | — |")
        for r in backlog.get("idle_webhooks", []):
            base = r["counts"][0]
            for row in r["counts"][1:]:
                claim_ms = row["claim_one_webhook_busy"]["median_ms"]
                base_ms = base["claim_one_webhook_busy"]["median_ms"]
                rows.append(f"| 5 | claim a batch of {r['batch']}, {r['database']}, 1,000 waiting, "
                            f"{row['idle_webhooks']:,} more enabled webhooks with nothing waiting | {claim_ms} ms "
                            f"(`next_due_in` {row['next_due_in_one_webhook_busy']['median_ms']} ms) | 5 webhooks: "
                            f"{base_ms} ms ({base['next_due_in_one_webhook_busy']['median_ms']} ms) | "
                            f"{claim_ms / base_ms:.2f} | — | — |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--quick", action="store_true", help="short runs and small sizes (< 3 minutes)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every duration and size")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
                        or DEFAULT_PG_URL)
    parser.add_argument("--rate", type=float, default=100.0, help="events/s of the latency runs (target: 100)")
    parser.add_argument("--tag", default="latest", help="name of the results files and plots")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the processes' logs")
    add_addon_src_option(parser)
    parser.add_argument("--table-from", metavar="JSON", help="only print the table of an earlier results file")
    args = parser.parse_args(argv)
    if args.table_from:
        print(table(json.loads(Path(args.table_from).read_text())))
        return 0
    if args.addon_src:
        from bench import common

        common.measure_addon_src(args.addon_src)

    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    databases = tuple(d.strip() for d in args.databases.split(",") if d.strip())
    pg_url = None
    if "postgresql" in databases:
        try:
            pg_url = ensure_pg_database(args.pg_url)
        except Exception as exc:  # noqa: BLE001
            log(f"PostgreSQL unreachable at {args.pg_url} ({type(exc).__name__}): PostgreSQL skipped")
            databases = tuple(d for d in databases if d != "postgresql")

    results_dir = REPO / "bench" / "results"
    results_dir.mkdir(exist_ok=True)
    docs_dir = REPO / "docs"
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    started = time.monotonic()
    results: dict[str, Any] = {
        "command": "python -m bench.run_all " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(), "postgresql": postgres_version(pg_url) if pg_url else None,
        "quick": args.quick, "size_factor": args.scale, "rate": args.rate, "addon_src": args.addon_src,
        "databases": databases,
        "loadavg_start": _loadavg(),
    }
    log(f"machine: {results['machine']}; load average {results['loadavg_start']}; work dir {workdir}")
    receiver = ReceiverProcess()
    ctx = Context(workdir, receiver, pg_url, databases, args.quick, args.scale, docs_dir, results, args.rate)
    try:
        from bench import backlog, intake, latency, scale, throughput

        modules = {"throughput": throughput, "latency": latency, "intake": intake, "backlog": backlog, "scale": scale}
        for name in SCENARIOS:
            if name in only:
                t0 = time.monotonic()
                log(f"--- {name}")
                try:
                    results[name] = modules[name].run(ctx)
                except Exception as exc:  # noqa: BLE001 - one broken scenario must not lose the others' figures
                    log(f"{name} failed: {type(exc).__name__}: {exc}")
                    results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"[:2000]
                    continue
                results[name]["elapsed_s"] = round(time.monotonic() - t0, 1)
        results["receiver_memory_kb"] = receiver.memory()
    finally:
        receiver.stop()
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    results["loadavg_end"] = _loadavg()
    results["elapsed_s"] = round(time.monotonic() - started, 1)

    markdown = table(results)
    if results.get("scale"):
        from bench import scale

        markdown += "\n\nScale (7):\n\n" + scale.table(results["scale"])
    latency_runs = results.get("latency", {}).get("runs", [])
    latencies = {id(run): run.pop("latencies_ms", None) for run in latency_runs}
    timelines = {id(run): run.pop("timeline", None) for run in latency_runs}
    (results_dir / f"{args.tag}.json").write_text(json.dumps(results, indent=1))  # latencies: too many to keep
    (results_dir / f"{args.tag}.md").write_text(
        f"`{results['command']}` — {results['started']}, {results['elapsed_s']} s, load average "
        f"{results['loadavg_start']} → {results['loadavg_end']}\n\n{markdown}\n")
    if not args.no_plots:
        from bench import plots

        for run in latency_runs:
            run["latencies_ms"] = latencies.get(id(run)) or []
            run["timeline"] = timelines.get(id(run)) or []
        title = f"{results['machine']['cores']} cores, {results['machine']['cpu_model']} ({args.tag})"
        if "latency" in results:
            plots.latency_histograms(results["latency"], docs_dir / f"bench-latency-{args.tag}.png", title)
            plots.latency_timelines(results["latency"], docs_dir / f"bench-timeline-{args.tag}.png", title)
        if "throughput" in results:
            plots.throughput_bars(results["throughput"], docs_dir / f"bench-throughput-{args.tag}.png", title)
    print(markdown)
    log(f"done in {results['elapsed_s']} s; results in {results_dir / (args.tag + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
