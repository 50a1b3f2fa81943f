"""The benchmark's PNG: latency of every paced incident over the run, and the projection's
lag (events not yet in PostgreSQL) over the same clock."""

from __future__ import annotations

from pathlib import Path


def plot_run(
    path: Path,
    latency: list[tuple[float, float]],
    lag: list[tuple[float, int]],
    title: str,
) -> Path:
    """Write the plot to `path`: `latency` as (seconds into the run, ms), `lag` as
    (seconds into the run, events behind)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    if latency:
        xs, ys = zip(*latency, strict=True)
        top.scatter(xs, ys, s=4, alpha=0.6, label="incident -> first provider request")
    top.axhline(50, color="red", linewidth=1, linestyle="--", label="goal: p99 <= 50 ms")
    top.set_ylabel("latency (ms)")
    top.set_yscale("log")
    top.legend(loc="upper left")
    top.set_title(title)
    if lag:
        xs, counts = zip(*lag, strict=True)
        bottom.plot(xs, counts, linewidth=1)
    bottom.set_ylabel("projection lag (events)")
    bottom.set_xlabel("seconds since the first incident")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
