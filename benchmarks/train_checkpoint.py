"""What keeping a long training run's work costs: the per-epoch checkpoint at ResNet-18 size.

`qtool train` rewrites its checkpoint atomically after every epoch with the best weights,
the current weights, AdamW's two moment buffers, the schedule and both random streams. This
measures, in one run, on the zoo's resnet18 (large: 11.2 M parameters at 1x128x128, 2
classes):
  - one training epoch of --images synthetic images (batch 32, AdamW, one-cycle schedule,
    deterministic algorithms, as qtool's trainer runs it) at each of --threads thread counts
    (`qtool train --threads`), and their ratio;
  - writing the checkpoint with its resume state (qtool.models.checkpoint.save_checkpoint of
    qtool.models.train_state.snapshot), its size, and loading it back weights-only;
and prints the write time as a fraction of the measured epoch. The CPU is shared with other
jobs here: figures are noisy, the ratio (same run) is the one to read.

Usage: python benchmarks/train_checkpoint.py [--images 256] [--threads 1,2] [--px 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from qtool.machine import cpu_line
from qtool.models import get_spec
from qtool.models.checkpoint import load_checkpoint, save_checkpoint
from qtool.models.train_state import LoopState, snapshot
from qtool.models.trainer import _deterministic, _Run, _train_epoch


def one_epoch(px: int, images: int, threads: int):
    """A fresh resnet18 (same seed) trained one epoch as qtool's trainer runs it
    (deterministic algorithms, `threads` torch threads); returns (run, seconds)."""
    torch.manual_seed(0)
    spec = get_spec("resnet18")
    module = spec.build((1, 1, px, px), 2, spec.architecture("large"))
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(images, 1, px, px, generator=generator)
    y = torch.randint(0, 2, (images,), generator=generator)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=1e-4)
    steps = -(-images // 32)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=steps * 2)
    norm = {"mean": [0.5], "std": [0.25]}
    run = _Run(module, optimizer, scheduler, nn.CrossEntropyLoss(), generator, norm, 32, 0)
    with _deterministic(torch, threads):
        began = time.perf_counter()
        _train_epoch(run, x, y, torch)
        return run, time.perf_counter() - began


def checkpoint_cost(run) -> tuple[int, float, float]:
    """(bytes, write seconds, load seconds) of the checkpoint with resume state."""
    loop = LoopState(epoch=1, best=(0.5, -1.0), best_epoch=1)
    loop.best_state = {k: v.detach().clone() for k, v in run.module.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.pt"
        began = time.perf_counter()
        resume = snapshot(run, loop, torch)
        save_checkpoint(loop.best_state, {"model": "resnet18"}, path, resume=resume)
        write_s = time.perf_counter() - began
        began = time.perf_counter()
        load_checkpoint(path)
        return path.stat().st_size, write_s, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--threads", default="1,2", help="torch thread counts to time")
    parser.add_argument("--px", type=int, default=128)
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    print(f"CPU: {cpu_line()}; torch {torch.__version__}; "
          "figures from one run on a shared machine (noisy)")  # fmt: skip
    epochs = {}
    for threads in counts:
        run, epochs[threads] = one_epoch(args.px, args.images, threads)
        params = sum(p.numel() for p in run.module.parameters())
        print(f"zoo resnet18 (large, {params / 1e6:.1f} M parameters, 1x{args.px}x{args.px}): "
              f"epoch of {args.images} images on {threads} thread(s) {epochs[threads]:.1f} s "
              f"({1000 * epochs[threads] / args.images:.0f} ms/image)")  # fmt: skip
    if len(counts) > 1:
        first, last = counts[0], counts[-1]
        print(f"epoch time {last} vs {first} thread(s): x{epochs[last] / epochs[first]:.2f}")
    size, write_s, load_s = checkpoint_cost(run)
    print(f"checkpoint with resume state: {size / 2**20:.0f} MiB, written in {write_s:.2f} s, "
          f"loaded (weights-only) in {load_s:.2f} s")  # fmt: skip
    print(f"write / epoch ({counts[-1]} thread(s)): {100 * write_s / epochs[counts[-1]]:.1f} %; "
          f"for a 36 s epoch (the issue's 128 px run): {100 * write_s / 36:.1f} %")  # fmt: skip


if __name__ == "__main__":
    main()
