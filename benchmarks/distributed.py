"""Fault campaigns on Dask vs this process, measured in one run and printed as ratios.

The INT8 campaign of a ResNet-18 (11.7 M parameters, 64x64 RGB, about 11.5 MB as INT8: built
here with torch, its head fitted by least squares on synthetic 10-class images, quantised
by `qtool.quantization.quantize_model`), the same trials on each executor:

  single     run_campaign in this process (1 worker)
  pool:2     the spawned process pool (--workers 2)
  local:1    Dask LocalCluster, 1 worker (Dask's overhead at equal workers)
  local:2    Dask LocalCluster, 2 workers
  sched+2    `dask scheduler` + 2 `dask worker` processes on 127.0.0.1 (started here)

All five are opened first; the trials are then cut into slices, and each slice runs on every
executor in turn (rotating order), so the load of this shared machine, which comes and goes,
hits them alike. Printed: trials/s after each executor's first slice (in which its workers
prepare the model), the open and first-slice times, the speed-ups over one process, Dask's
overhead at one worker, and from Dask's own byte counters the bytes moved per trial against
the model's size. Every executor must give the same trial results (checked).

Usage: python benchmarks/distributed.py [--trials 1000] [--budgets 1,10,100] [--test 32]
       [--rounds 6] [--only single,local:2] [--folder DIR]
The machine is shared: the load average before and after each run is printed; compare
ratios measured in one run, and rerun when the machine is quiet.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# this file is named like the `distributed` package: keep its folder off the import path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent / "tests"))

from dask_cluster import scheduler_and_workers  # noqa: E402

from qtool.cluster import parse_cluster  # noqa: E402
from qtool.cluster.units import traffic  # noqa: E402
from qtool.data.datasets import load_dataset  # noqa: E402
from qtool.faults.campaign import CampaignPlan  # noqa: E402
from qtool.faults.campaign.distributed import dask_executor  # noqa: E402
from qtool.faults.campaign.executor import (  # noqa: E402
    CampaignJob,
    ProcessPool,
    TrialTask,
    close_executor,
    in_process,
    prepare_job_models,
)
from qtool.machine import cpu_line  # noqa: E402

SIZE = 64
CLASSES = 10


def load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def synthetic_npz(path: Path, train: int, test: int, seed: int = 0) -> Path:
    """10 classes of oriented colour gratings in noise, MedMNIST layout (uint8 HWC)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, CLASSES, n)
        out = np.empty((n, SIZE, SIZE, 3), np.uint8)
        for i, c in enumerate(labels):
            angle, freq = np.pi * c / CLASSES, 3 + (c % 4) * 2
            wave = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
            colour = np.array([(c * 37) % 255, (c * 91) % 255, (c * 53) % 255]) / 255
            img = (
                0.5 + 0.35 * wave[..., None] * colour + 0.15 * rng.standard_normal((SIZE, SIZE, 3))
            )
            out[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
        return out, labels.reshape(-1, 1)

    arrays = {}
    for split, n in (("train", train), ("val", test), ("test", test)):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images(n)
    np.savez(path, **arrays)
    return path


def resnet18(path: Path, data: Path) -> Path:
    """ResNet-18 (BasicBlock 2-2-2-2, widths 64..512) at 64 px; random convolutions, the head
    fitted by least squares on pooled features of the train split; exported to ONNX."""
    import onnx
    import torch
    from torch import nn

    from qtool.data.datasets import load_dataset
    from qtool.modelfile.metadata import set_metadata

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))  # fmt: skip

        def forward(self, x):
            y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    torch.manual_seed(0)
    widths, layers, cin = [64, 128, 256, 512], [], 64
    for i, w in enumerate(widths):
        layers += [Block(cin, w, 1 if i == 0 else 2), Block(w, w, 1)]
        cin = w
    stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU())
    features = nn.Sequential(stem, *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    for m in features.modules():  # unit-variance activations through 18 random layers
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.fill_(2.0)
    train = load_dataset(f"npz:{data}", "train")
    with torch.no_grad():
        f = features(torch.from_numpy(train.x)).double().numpy()
    a = np.hstack([f, np.ones((len(f), 1))])
    sol = np.linalg.solve(a.T @ a + 1e-3 * np.eye(a.shape[1]), a.T @ np.eye(CLASSES)[train.y])
    head = nn.Linear(512, CLASSES)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(sol[:-1].T).float())
        head.bias.copy_(torch.from_numpy(sol[-1]).float())
    model = nn.Sequential(features, head).eval()
    torch.onnx.export(  # the TorchScript exporter: no onnxscript rewrite of this plain CNN
        model, torch.zeros(1, 3, SIZE, SIZE), str(path), input_names=["input"],
        output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=17, dynamo=False,
    )  # fmt: skip
    proto = onnx.load(str(path))
    set_metadata(proto, {"qtool.dataset": f"npz:{data}", "qtool.input_shape": ["N", 3, SIZE, SIZE]})
    onnx.save(proto, str(path))
    return path


def build(folder: Path, test: int) -> tuple[Path, str]:
    from qtool.quantization.quantize import QuantizeOptions, quantize_model

    data = synthetic_npz(folder / "gratings.npz", train=600, test=test)
    fp32 = resnet18(folder / "resnet18.onnx", data)
    int8 = folder / "resnet18.int8.onnx"
    report = quantize_model(fp32, int8, f"npz:{data}", QuantizeOptions(samples=64), force=True)
    print(
        f"model: ResNet-18 at {SIZE}x{SIZE}, FP32 {fp32.stat().st_size / 1e6:.1f} MB -> INT8 "
        f"{int8.stat().st_size / 1e6:.1f} MB; test accuracy FP32 "
        f"{100 * (report.accuracy_before or 0):.1f} %, INT8 "
        f"{100 * (report.accuracy_after or 0):.1f} % on {test} images"
    )
    return int8, f"npz:{data}:test"


def open_executors(names: list[str], address: str) -> dict:
    """Every executor, opened (clusters started, connected); seconds each took to open."""
    out = {}
    for name in names:
        t = time.perf_counter()
        if name == "single":
            execute = in_process
        elif name == "pool:2":
            execute = ProcessPool(2)
        else:
            execute = dask_executor(parse_cluster(address if name == "sched+2" else name))
            execute.runner.open()
        out[name] = {"execute": execute, "open_seconds": time.perf_counter() - t}
    return out


def interleaved(runs: dict, model: Path, data: str, plan: CampaignPlan, rounds: int) -> None:
    """The trials in `rounds` slices; each slice runs on every executor in turn (rotating
    order), so load that comes and goes on this shared machine hits them all alike. The
    first slice (workers preparing the model) is timed apart from the rest."""
    dataset = load_dataset(data)
    job = CampaignJob((str(model),), data, plan)
    prepared = prepare_job_models(job, dataset)
    tasks = [TrialTask(0, b, t) for b in plan.budgets for t in range(int(plan.trials))]
    order = np.random.default_rng(0).permutation(len(tasks))  # budgets mixed in each slice
    slices = [[tasks[i] for i in part] for part in np.array_split(order, rounds + 1)]
    names = list(runs)
    for r in runs.values():
        r.update(results=[], seconds=0.0, first_seconds=0.0, counters={})
        if hasattr(r["execute"], "runner"):
            r["counters"] = traffic(r["execute"].runner.client)
    for i, part in enumerate(slices):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            r = runs[name]
            t = time.perf_counter()
            r["results"] += list(r["execute"](job, prepared, dataset.y, part))
            key = "first_seconds" if i == 0 else "seconds"
            r[key] += time.perf_counter() - t
        print(f"slice {i + 1}/{len(slices)} done; {load()}", flush=True)
    timed = sum(len(p) for p in slices[1:])
    for r in runs.values():
        r["rate"] = timed / r["seconds"]
        r["results"].sort(key=lambda x: (x.model, x.bits, x.trial))
        execute = r.pop("execute")
        if hasattr(execute, "runner"):
            last = traffic(execute.runner.client)
            c = {k: last[k] - r["counters"].get(k, 0) for k in last}
            c.update(inputs_once=execute.runner.shared_bytes, workers=execute.workers)
            r["counters"] = c
        close_executor(execute)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1002, help="trials in all (over budgets)")
    parser.add_argument("--budgets", default="1,10,100")
    parser.add_argument("--test", type=int, default=32, help="test images scored per trial")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved slices after the first")
    parser.add_argument("--only", default="single,pool:2,local:1,local:2,sched+2")
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    budgets = tuple(int(b) for b in args.budgets.split(","))
    print(f"CPU: {cpu_line()}")
    print(f"{load()} at start")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        model, data = build(folder, args.test)
        plan = CampaignPlan(budgets=budgets, trials=max(1, args.trials // len(budgets)), seed=0)
        with scheduler_and_workers(folder) as address:
            runs = open_executors(args.only.split(","), address)
            interleaved(runs, model, data, plan, args.rounds)
        report(runs, model, args.rounds)


def report(runs: dict, model: Path, rounds: int) -> None:
    first = next(iter(runs.values()))["results"]
    assert all(r["results"] == first for r in runs.values()), "results differ by executor"
    print(f"\nall {len(runs)} executors gave the same {len(first)} trial results")
    print(f"trials/s over slices 2..{rounds + 1} (after each executor's first slice):")
    for name, r in runs.items():
        print(
            f"  {name:8s} {r['rate']:6.2f} trials/s; opening took {r['open_seconds']:.1f} s, "
            f"the first slice (workers preparing the model) {r['first_seconds']:.1f} s"
        )
    one = runs.get("single", {}).get("rate")
    if one:
        for name in ("pool:2", "local:1", "local:2", "sched+2"):
            if name in runs:
                print(f"  {name:8s} / single: {runs[name]['rate'] / one:.2f}x")
    if one and "local:1" in runs:
        overhead = one / runs["local:1"]["rate"] - 1
        print(f"  Dask's overhead at one worker: {100 * overhead:+.1f} % time per trial")
    if "local:2" in runs and "pool:2" in runs:
        print(f"  local:2 / pool:2: {runs['local:2']['rate'] / runs['pool:2']['rate']:.2f}x")
    size = model.stat().st_size
    for name, r in runs.items():
        c = r["counters"]
        if not c:
            continue
        n = len(r["results"])
        moved = sum(v for k, v in c.items() if k not in ("inputs_once", "workers"))
        print(
            f"  {name:8s} bytes per trial {moved / n:,.0f} (client->scheduler "
            f"{c['client_to_scheduler'] / n:,.0f}, scheduler->workers "
            f"{c['scheduler_to_workers'] / n:,.0f}, workers->scheduler "
            f"{c['workers_to_scheduler'] / n:,.0f}, results served "
            f"{c['served_by_workers'] / n:,.0f}); model {size:,} B; inputs (model + data) sent "
            f"once to each of {c['workers']} worker(s): {c['inputs_once']:,} B"
        )


if __name__ == "__main__":
    main()
