"""Markdown tables of one run of the reliability suite, from `test-artifacts/reliability.jsonl`.

    .venv/bin/python -m tests.reliability.report            # the last full run (load, hostile input and secrets)
    .venv/bin/python -m tests.reliability.report RUN_ID     # any run

docs/reliability.md is written from this output.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.reliability.harness import REPORT_PATH


def _lat(value: dict | None) -> str:
    if not value or value.get("p50") is None:
        return "–"
    return f"{value['p50']:g} / {value['p95']:g} / {value['p99']:g} / {value['max']:g}"


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def delivery_table(lines: list[dict]) -> list[str]:
    out = [_row(["scenario", "database", "load s", "rate/s", "sent", "accepted", "expected deliveries", "arrived",
                 "lost", "duplicated (same webhook-id)", "events accepted twice", "5xx other than 503",
                 "intake ms p50/p95/p99/max", "delivery ms p50/p95/p99/max", "drain after load s", "wall s"]),
           _row(["---"] * 16)]
    for d in lines:
        if "expected_deliveries" not in d or d["scenario"] == "receiver-outage":
            continue
        other_5xx = sum(v for k, v in d["answers"].items() if k.startswith("5") and k != "503")
        out.append(_row([d["scenario"], d.get("database", "sqlite"), round(d["load_s"], 1), d["target_rate_per_s"],
                         d["sent"], d["accepted"], d["expected_deliveries"], d["arrived"], d["lost"],
                         d["duplicated_deliveries"], d.get("duplicated_events", 0), other_5xx,
                         _lat(d["intake_latency_ms"]), _lat(d["delivery_latency_ms"]),
                         d.get("drain_after_load_s", "–"), d.get("wall_s", "–")]))
    return out


def main(argv: list[str]) -> int:
    lines = [json.loads(line) for line in REPORT_PATH.read_text().splitlines() if line.strip()]
    full = [d["run"] for d in lines if {"load-sqlite", "hostile-input", "secrets"}
            <= {e["scenario"] for e in lines if e["run"] == d["run"]}]
    run = argv[0] if argv else (full[-1] if full else lines[-1]["run"])
    lines = [d for d in lines if d["run"] == run]
    print(f"Run {run}, machine: {json.dumps(lines[0]['machine'])}\n")
    print("\n".join(delivery_table(lines)))
    for d in lines:
        print(f"\n### {d['scenario']}\n")
        print("```json")
        print(json.dumps({k: v for k, v in d.items() if k not in ("run", "machine")}, indent=1))
        print("```")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
