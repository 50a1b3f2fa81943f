"""`notifier bench`: the pipeline measured under load (see run.py for the phases)."""

from notifier.bench.run import run_bench

__all__ = ["run_bench"]
