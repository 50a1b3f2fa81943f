"""CPU used by each part of the bench's machine: the worker, the sandbox, the brokers, the
registry, PostgreSQL and the bench's own publisher, so a figure says where the time went."""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
        return float(times.user + times.system)
    except psutil.Error:  # gone since: its time is lost, not counted twice
        return 0.0


def _group(cmdline: list[str]) -> str | None:
    joined = " ".join(cmdline)
    if "kafka.Kafka" in joined:
        return "kafka"
    if "registry" in joined and "java" in joined:
        return "schema registry"
    if "postgres" in joined:
        return "postgres"
    return None


class CpuMeter:
    """CPU seconds of every process of the run, grouped by what it is."""

    def __init__(
        self, worker_pids: list[int], state_dir: Path, projector_pids: list[int] | None = None
    ) -> None:
        self.groups: dict[str, list[psutil.Process]] = {
            "worker": [psutil.Process(pid) for pid in worker_pids],
            "bench publisher": [psutil.Process(os.getpid())],
        }
        if projector_pids:
            self.groups["projector"] = [psutil.Process(pid) for pid in projector_pids]
        me = psutil.Process(os.getpid())
        for child in me.children():
            if child.pid not in worker_pids and "sandbox" in " ".join(child.cmdline()):
                self.groups["sandbox"] = [child]
        marker = str(state_dir)
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            group = _group(cmdline) if any(marker in part for part in cmdline) else None
            if group is not None:
                self.groups.setdefault(group, []).extend([proc, *proc.children(recursive=True)])

    def snapshot(self) -> dict[str, float]:
        """CPU seconds used so far, per group."""
        return {name: sum(_cpu(p) for p in procs) for name, procs in self.groups.items()}

    def since(self, before: dict[str, float]) -> dict[str, float]:
        """CPU seconds used per group since `before`."""
        now = self.snapshot()
        return {name: max(0.0, now[name] - before.get(name, 0.0)) for name in now}
