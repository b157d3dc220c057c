"""Campaigns on Dask: the same JSON on any cluster, a killed worker changes nothing, Ctrl-C
cancels and writes nothing, and a run without --cluster never imports Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from flip_models import digits_mlp, quantized

from qtool.cli import main
from qtool.cluster import parse_cluster
from qtool.faults.campaign import CampaignPlan, run_campaign

distributed = pytest.importorskip("distributed")
from qtool.faults.campaign.distributed import dask_executor  # noqa: E402

VARYING = ("cluster", "workers")  # plus every *_seconds and *_per_s field


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("campaign_dask")
    mlp = digits_mlp(d / "mlp.onnx", hidden=16)
    return [mlp, quantized(mlp, d / "mlp.int8.onnx", "qdq")]


def _blank(value):
    """The report with the fields whose names say they vary (timings, where it ran) blanked."""
    if isinstance(value, dict):
        return {
            k: None if k in VARYING or k.endswith(("_seconds", "_per_s")) else _blank(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_blank(v) for v in value]
    return value


def test_same_json_without_a_cluster_on_local_1_local_2_and_a_scheduler(
    models, dask_scheduler, tmp_path
):
    args = [
        "flip", *map(str, models), "--bits", "0,4,64", "--trials", "auto", "--margin", "4",
        "--max-trials", "48", "--data", "digits", "--seed", "3",
    ]  # fmt: skip
    where = {"none": [], "local1": ["--cluster", "local:1"], "local2": ["--cluster", "local:2"]}
    where["scheduler"] = ["--cluster", dask_scheduler]
    reports = {}
    for name, extra in where.items():
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(main, [*args, *extra, "--json", str(out)])
        assert result.exit_code == 0, result.output
        reports[name] = json.loads(out.read_text())
    texts = {name: json.dumps(_blank(r), indent=1) for name, r in reports.items()}
    assert texts["local1"] == texts["none"]
    assert texts["local2"] == texts["none"]
    assert texts["scheduler"] == texts["none"]
    assert [reports[n]["cluster"] for n in where] == [None, "local:1", "local:2", dask_scheduler]
    assert [reports[n]["workers"] for n in where] == [1, 1, 2, 2]
    sizing = reports["none"]["sizing"]["budgets"]
    assert {s["stopped_by"] for s in sizing if s["bits"] == 0} == {"leveugle"}  # N = 1 bit set
    assert {s["trials"] for s in sizing if s["bits"] == 0} == {1}
    assert all(32 <= s["trials"] <= 48 for s in sizing if s["bits"] > 0)
    assert len(reports["none"]["trial_results"]) == sum(s["trials"] for s in sizing)


def test_a_killed_worker_loses_no_trial_and_duplicates_none(models, dask_scheduler):
    plan = CampaignPlan(budgets=(1, 8), trials=40, seed=7)
    reference = run_campaign(models, "digits", plan, show_progress=False)
    with dask_executor(parse_cluster(dask_scheduler)) as execute:
        client = execute.runner.client
        client.wait_for_workers(2, timeout=60)  # an earlier kill's worker is back
        victim = sorted(client.run(os.getpid).values())[0]

        def killing(job, prepared, y, tasks):
            for i, r in enumerate(execute(job, prepared, y, tasks)):
                if i == 0:
                    os.kill(victim, signal.SIGKILL)  # mid-campaign: tasks are still queued
                yield r

        result = run_campaign(models, "digits", plan, show_progress=False, executor=killing)
        assert victim not in client.run(os.getpid).values()
    assert len(result.trial_results) == len(reference.trial_results) == 2 * 2 * 40
    assert result.trial_results == reference.trial_results  # sorted: none lost, none twice
    assert result.stats == reference.stats


def test_an_interrupted_campaign_cancels_its_tasks_on_the_scheduler(models, dask_scheduler):
    plan = CampaignPlan(budgets=(1, 2), trials=400, seed=1)
    with dask_executor(parse_cluster(dask_scheduler)) as execute:

        def interrupted(job, prepared, y, tasks):
            for r in execute(job, prepared, y, tasks):
                yield r
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run_campaign(models, "digits", plan, show_progress=False, executor=interrupted)

    def ours(dask_scheduler=None) -> int:  # sent by value: the scheduler cannot import tests
        return sum(1 for key in dask_scheduler.tasks if str(key).startswith("qtool-"))

    with distributed.Client(dask_scheduler, set_as_default=False, timeout=10) as client:
        deadline = time.monotonic() + 10
        while (left := client.run_on_scheduler(ours)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == 0


def test_ctrl_c_on_a_local_cluster_exits_130_keeping_only_finished_trials(models, tmp_path):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "never.json"
    cmd = [
        sys.executable, "-m", "qtool.cli", "flip", *map(str, models), "--bits", "1,2",
        "--trials", "20000", "--data", "digits", "--cluster", "local:1", "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            kids = psutil.Process(proc.pid).children(recursive=True)
            if any("spawn_main" in " ".join(k.cmdline()) for k in kids):
                break
            time.sleep(0.1)
        time.sleep(2.0)  # trials under way
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole group
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = output.decode()
    assert proc.returncode == 130, text
    assert "interrupted" in text and "Traceback" not in text
    if out.exists():  # trials had completed: they are written, marked partial (issue 18)
        saved = json.loads(out.read_text())
        assert saved["partial"] and saved["stopped"].startswith("interrupted (SIGINT)")
    assert set(tmp_path.iterdir()) <= {out}  # no temporary file left behind
    time.sleep(0.5)
    alive = [p for p in psutil.process_iter(["pid"]) if _in_group(p, proc.pid)]
    assert not alive  # the cluster's worker processes went with it


def _in_group(p, pgid: int) -> bool:
    try:
        return os.getpgid(p.pid) == pgid and p.status() != "zombie"
    except (ProcessLookupError, OSError, Exception):
        return False


def test_a_campaign_without_cluster_imports_no_dask(models, tmp_path):
    code = f"""
import sys
from click.testing import CliRunner
from qtool.cli import main
r = CliRunner().invoke(main, ["flip", {str(models[1])!r}, "--bits", "1,4", "--trials", "3",
                              "--data", "digits"])
assert r.exit_code == 0, r.output
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
