"""PNG figures of a run's results (matplotlib, the `bench` extra)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _latency_panels(latency: dict[str, Any], path: Path, title: str, field: str,
                    draw: Callable[[Any, list[dict]], None]) -> Path:
    """One panel per database/topology with runs that have `field`; `draw(ax, runs)` fills each panel."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in latency["runs"]:
        if run.get(field):
            groups.setdefault((run["database"], run["topology"]), []).append(run)
    if not groups:
        return path
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), squeeze=False)
    for ax, ((kind, topology), runs) in zip(axes[0], groups.items(), strict=True):
        draw(ax, runs)
        ax.set_title(f"{kind}, {'worker in addon serve' if topology == 'serve' else 'separate addon worker'}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def latency_histograms(latency: dict[str, Any], path: Path, title: str) -> Path:
    """One panel per database/topology: the healthy webhooks' latencies, normal run and hanging-webhook run."""

    def draw(ax: Any, runs: list[dict]) -> None:
        values_all = [v for r in runs for v in r["latencies_ms"]]
        top = max(1.0, sorted(values_all)[int(len(values_all) * 0.995)])
        low = min(0.0, min(values_all))
        bins = [low + (top - low) * i / 60 for i in range(61)]
        for run in runs:
            label = ("one webhook hanging" if run["hang"] else "all healthy") + \
                f": p50 {run['all']['p50_ms']} / p99 {run['all']['p99_ms']} ms"
            ax.hist([min(v, top) for v in run["latencies_ms"]], bins=bins, alpha=0.55, label=label)
        ax.set_xlabel("intake 202 → receiver has the request (ms; last bin holds the tail;\n"
                      "< 0: the delivery arrived before the 202 reached the client)")
        ax.set_ylabel("deliveries")
        ax.legend(fontsize=8)

    return _latency_panels(latency, path, title, "latencies_ms", draw)


def latency_timelines(latency: dict[str, Any], path: Path, title: str) -> Path:
    """One panel per database/topology: each healthy delivery's latency against the moment its event was
    answered, normal run and hanging-webhook run (where a periodic burst would show as a periodic spike)."""

    def draw(ax: Any, runs: list[dict]) -> None:
        for run in runs:
            xs, ys = zip(*run["timeline"], strict=True)
            ax.scatter(xs, ys, s=2, alpha=0.4, label="one webhook hanging" if run["hang"] else "all healthy")
        ax.set_xlabel("s into the run (the event's 202)")
        ax.set_ylabel("latency (ms)")
        ax.legend(fontsize=8, markerscale=5)

    return _latency_panels(latency, path, title, "timeline", draw)


def throughput_bars(throughput: dict[str, Any], path: Path, title: str) -> Path:
    plt = _pyplot()
    runs = throughput["runs"]
    labels = [f"{r['database']}\n{r['workers']} worker{'s' if r['workers'] > 1 else ''}" for r in runs]
    values = [r["per_s"] for r in runs]
    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(labels, values, color="#4c78a8")
    ceilings = [r.get("ceiling", {}).get("per_s", throughput.get("ceiling_per_s")) for r in runs]
    ax.plot(range(len(runs)), ceilings, color="#e45756", linestyle="none", marker="_", markersize=40,
            label="raw ceiling measured just before")
    ax.plot(range(len(runs)), [0.7 * c for c in ceilings], color="#f58518", linestyle="none", marker="_",
            markersize=40, label="70 % of it (target, 1 worker)")
    for bar, r in zip(bars, runs, strict=True):
        ax.annotate(f"{r['ratio'] * 100:.0f} %", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("deliveries / s")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
