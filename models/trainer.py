"""The zoo's training recipe: deterministic for a seed, normalised from the train split.

Takes numpy arrays (the toolchain loads data sets), so models/ depends on nothing above it.
Determinism: the seed fixes weight init (torch.manual_seed), every shuffle and augmentation
(one torch.Generator), and torch's deterministic algorithms are on during training; the same
seed, data and thread count give bit-identical weights. The epoch with the best validation
accuracy (ties: lower validation loss) is kept, so a late wobble does not cost accuracy.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from qtool.models.registry import ModelSpec, input_shape_for
from qtool.models.train_state import LoopState, restore, snapshot

MIN_STD = 1e-6
SIGINT = 2  # signal.SIGINT, the number Ctrl-C's KeyboardInterrupt stands for
TRAIN_THREADS = 1
EVAL_BATCH = 256  # samples per forward pass when validating and predicting


@dataclass
class EpochStats:
    epoch: int
    loss: float
    val_accuracy: float
    val_loss: float
    seconds: float = 0.0  # wall time of the epoch (training and validation)


@dataclass
class TrainResult:
    """The best module (eval mode), its checkpoint config and the per-epoch history.

    `stopped` says why a run ended before its last epoch ("time budget", "interrupted");
    then `epochs_done` < the config's `epochs` and the run can be resumed.
    """

    module: object
    config: dict
    history: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0
    epochs_done: int = 0
    stopped: str | None = None
    signum: int | None = None  # the signal that interrupted it (SIGINT 2, SIGTERM 15, ...)


# after every epoch: (stats, checkpoint() -> {"state_dict": best weights so far, "config",
# "resume": qtool.models.train_state.snapshot}). Returning a reason (str) stops the run there.
EpochHook = Callable[[EpochStats, Callable[[], dict]], "str | None"]


def compute_normalization(x: np.ndarray, how: str) -> dict[str, list[float]]:
    """Mean/std from training samples: per channel (axis 1 of NCHW) or per flat feature.

    Features or channels that never vary get std 1 so normalising never divides by zero.
    """
    if how == "per-channel":
        if x.ndim != 4:
            raise ValueError("per-channel normalisation needs (N, C, H, W) images")
        axes = (0, 2, 3)
        mean, std = x.mean(axis=axes), x.std(axis=axes)
    else:
        flat = x.reshape(len(x), -1)
        mean, std = flat.mean(axis=0), flat.std(axis=0)
    std = np.where(std < MIN_STD, 1.0, std)
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def _prepare(x: np.ndarray, spec: ModelSpec) -> np.ndarray:
    return x if spec.input_kind == "image" else x.reshape(len(x), -1)


def _normalize(t, norm: dict, torch):
    mean = torch.tensor(norm["mean"], dtype=torch.float32)
    std = torch.tensor(norm["std"], dtype=torch.float32)
    shape = [1, -1] + [1] * (t.dim() - 2)
    return (t - mean.reshape(shape)) / std.reshape(shape)


def _shift(batch, max_shift: int, generator, torch):
    """Random translation by up to max_shift pixels, zero filled (images in [0, 1])."""
    n, _, h, w = batch.shape
    padded = torch.nn.functional.pad(batch, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    out = torch.empty_like(batch)
    for dy in range(2 * max_shift + 1):
        for dx in range(2 * max_shift + 1):
            sel = ((offsets[:, 0] == dy) & (offsets[:, 1] == dx)).nonzero().flatten()
            if len(sel):
                out[sel] = padded[sel, :, dy : dy + h, dx : dx + w]
    return out


@contextlib.contextmanager
def _deterministic(torch, threads: int = TRAIN_THREADS) -> Iterator[None]:
    """Deterministic algorithms on and `threads` threads while training; restored after.

    One thread (the default): results then do not depend on the core count, and on a shared
    2-core box OpenMP's second thread mostly spins at barriers (measured 20x slower under
    load). More threads give the same weights for the same thread count only.
    """
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(was_threads)


@dataclass
class _Run:
    """What one training run steps: module, optimiser, schedule, and its random stream."""

    module: object
    optimizer: object
    scheduler: object
    loss_fn: object
    generator: object
    norm: dict
    batch_size: int
    shift: int


def _train_epoch(run: _Run, xt, yt, torch) -> float:
    """One pass over the shuffled training set; returns the mean training loss."""
    run.module.train()
    order = torch.randperm(len(xt), generator=run.generator)
    total, seen = 0.0, 0
    for i in range(0, len(xt), run.batch_size):
        idx = order[i : i + run.batch_size]
        xb = xt[idx]
        if run.shift:
            xb = _shift(xb, run.shift, run.generator, torch)
        logits = run.module(_normalize(xb, run.norm, torch))
        loss = run.loss_fn(logits, yt[idx])
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        total += float(loss.detach()) * len(idx)
        seen += len(idx)
    return total / max(seen, 1)


def _validate(run: _Run, xv, yv, torch) -> tuple[float, float]:
    """(accuracy, loss) on the normalised validation set, in chunks of EVAL_BATCH samples
    (activations of a 64 px model on a whole validation split would take gigabytes)."""
    run.module.eval()
    with torch.no_grad():
        chunks = [run.module(xv[i : i + EVAL_BATCH]) for i in range(0, len(xv), EVAL_BATCH)]
        val_logits = torch.cat(chunks)
        val_loss = float(run.loss_fn(val_logits, yv))
        val_acc = float((val_logits.argmax(1) == yv).float().mean())
    return val_acc, val_loss


def train(
    spec: ModelSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    class_names: list[str],
    dataset: str,
    kind: str,
    seed: int = 0,
    epochs: int | None = None,
    lr: float | None = None,
    architecture: dict | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    resume: dict | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Train `spec` on the arrays and return the best-on-validation module and its config.

    `resume` is a checkpoint saved from `on_epoch` of an earlier run with the same settings
    ({"state_dict": best weights, "resume": snapshot}); the run continues after its last
    epoch and ends with the weights an uninterrupted run ends with. Ctrl-C during an epoch
    stops the run with `stopped="interrupted"` (that epoch's work is dropped; the last
    snapshot handed to `on_epoch` is the one to resume from). `architecture` is
    `spec.architecture(size, width, depth)` (None: the default size); it is recorded in the
    config so that a checkpoint rebuilds the same network.
    """
    import torch

    start = time.perf_counter()
    arch = dict(architecture or spec.architecture())
    epochs = spec.epochs if epochs is None else int(epochs)
    lr = spec.lr if lr is None else float(lr)
    batch_size = spec.batch_size if batch_size is None else int(batch_size)
    threads = TRAIN_THREADS if threads is None else int(threads)
    input_shape = input_shape_for(spec, tuple(x_train.shape[1:]), kind)
    xtr = _prepare(np.asarray(x_train, dtype=np.float32), spec)
    xva = _prepare(np.asarray(x_val, dtype=np.float32), spec)
    norm = compute_normalization(xtr, spec.normalization)
    with _deterministic(torch, threads):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        module = spec.build(input_shape, len(class_names), arch)
        xt, yt = torch.from_numpy(xtr), torch.from_numpy(np.asarray(y_train, dtype=np.int64))
        xv = _normalize(torch.from_numpy(xva), norm, torch)
        yv = torch.from_numpy(np.asarray(y_val, dtype=np.int64))
        run = _make_run(spec, module, generator, norm, (len(xt), batch_size, epochs, lr), torch)
        loop = LoopState()
        if resume is not None:
            loop = restore(run, resume["resume"], resume["state_dict"], torch, EpochStats)

        def config_now() -> dict:
            fixed = {"epochs": epochs, "lr": lr, "threads": threads, "seed": int(seed)}
            fixed["architecture"] = arch
            return _config(spec, dataset, input_shape, norm, class_names, run, loop, fixed)

        def checkpoint() -> dict:
            resume_state = snapshot(run, loop, torch)
            return {"state_dict": loop.best_state, "config": config_now(), "resume": resume_state}

        stopped, signum = _fit(run, loop, (xt, yt, xv, yv), epochs, on_epoch, checkpoint, torch)
    result = TrainResult(module, config_now(), loop.history, time.perf_counter() - start)
    result.epochs_done, result.stopped, result.signum = loop.epoch, stopped, signum
    return result


def _make_run(spec, module, generator, norm: dict, sizes: tuple, torch) -> _Run:
    """AdamW and its one-cycle schedule over every step of `epochs` (so a resumed run must
    keep samples, batch size, epochs and lr), the loss and the augmentation of `spec`."""
    samples, batch_size, epochs, lr = sizes
    steps_per_epoch = max(1, -(-samples // batch_size))
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=spec.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(1, epochs * steps_per_epoch), pct_start=0.2
    )
    shift = spec.augment_shift if spec.input_kind == "image" else 0
    loss_fn = torch.nn.CrossEntropyLoss()
    return _Run(module, optimizer, scheduler, loss_fn, generator, norm, batch_size, shift)


def _config(spec, dataset, input_shape, norm, class_names, run, loop, fixed: dict) -> dict:
    """The checkpoint config: what the run is and where it stands (`fixed`: epochs, lr,
    threads, seed)."""
    import torch

    return {
        "model": spec.name,
        "dataset": dataset,
        "input_shape": list(input_shape),
        "normalization": norm,
        "class_names": list(class_names),
        **fixed,
        "batch_size": run.batch_size,
        "weight_decay": spec.weight_decay,
        "augment_shift": run.shift,
        "best_epoch": loop.best_epoch,
        "val_accuracy": loop.best[0] if loop.best else None,
        "torch_version": torch.__version__,
    }


def _fit(
    run: _Run, loop: LoopState, tensors, epochs: int, on_epoch, checkpoint, torch
) -> tuple[str | None, int | None]:
    """Train from epoch loop.epoch + 1 to `epochs`, tracking the best epoch (val accuracy,
    then lower val loss); leave its weights in `run.module` (eval mode). Returns why the run
    stopped early (None: it ran every epoch) and the signal number when one stopped it."""
    xt, yt, xv, yv = tensors
    stopped, signum = None, None
    while loop.epoch < epochs and stopped is None:
        began = time.perf_counter()
        try:
            loss = _train_epoch(run, xt, yt, torch)
            val_acc, val_loss = _validate(run, xv, yv, torch)
        except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM/SIGHUP as the CLI raises them
            stopped, signum = "interrupted", getattr(exc, "signum", SIGINT)
            break
        loop.epoch += 1
        stats = EpochStats(loop.epoch, loss, val_acc, val_loss, time.perf_counter() - began)
        loop.history.append(stats)
        if loop.best is None or (val_acc, -val_loss) > loop.best:
            loop.best = (val_acc, -val_loss)
            loop.best_epoch = loop.epoch
            loop.best_state = {k: v.detach().clone() for k, v in run.module.state_dict().items()}
        if on_epoch is not None:
            try:
                stopped = on_epoch(stats, checkpoint)
            except KeyboardInterrupt as exc:  # the hook writes atomically: the last file stands
                stopped, signum = "interrupted", getattr(exc, "signum", SIGINT)
    if loop.best_state is not None:
        run.module.load_state_dict(loop.best_state)
    run.module.eval()
    return stopped, signum


def predict(module, x: np.ndarray, config: dict, batch: int = EVAL_BATCH) -> np.ndarray:
    """Torch class scores for raw samples (flattened/normalised per the checkpoint config)."""
    import torch

    norm = config["normalization"]
    if len(config["input_shape"]) == 2:
        x = x.reshape(len(x), -1)
    chunks = []
    module.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            t = _normalize(torch.from_numpy(np.asarray(x[i : i + batch], np.float32)), norm, torch)
            chunks.append(module(t).numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
