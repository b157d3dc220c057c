"""Benchmarking: a typed plan (plan.py), inputs prepared before timing (inputs.py), the
measuring loop (bench.py) and the report's summaries, energy and ratios (results.py)."""

from qtool.benchmarking.bench import run_bench
from qtool.benchmarking.plan import BenchPlan

__all__ = ["BenchPlan", "run_bench"]
