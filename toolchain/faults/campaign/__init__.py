"""Fault campaigns: accuracy under N random faults, many seeded trials per budget.

run.py        `CampaignPlan`, `run_campaign`, the result records
trials.py     one model prepared in memory and one trial on it
executor.py   where trials run (this process, worker processes; the seam for others)
stats.py      per-budget statistics, bootstrap interval, collapse rate, CSV export
evaluate.py   clean vs faulted accuracy of one manifest
"""

from qtool.faults.campaign.evaluate import FlipEvaluation, evaluate_manifest
from qtool.faults.campaign.run import CampaignPlan, CampaignResult, run_campaign
from qtool.faults.campaign.stats import BudgetStats, TrialResult, stats_csv

__all__ = [
    "BudgetStats",
    "CampaignPlan",
    "CampaignResult",
    "FlipEvaluation",
    "TrialResult",
    "evaluate_manifest",
    "run_campaign",
    "stats_csv",
]
