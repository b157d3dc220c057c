"""The parity check: does the exported ONNX model compute what the torch module computes?

The same samples go through torch and through an ONNX Runtime session with the
optimisations users get, at batch 1 and in batches of up to 32 (a static-batch model: in
batches of exactly its size), and the scores are compared element by element like
numpy.allclose: |onnx - torch| <= atol + rtol * |torch|, all finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qtool.errors import QtoolError
from qtool.exporters.pytorch import torch_threads

PARITY_BATCH = 32


@dataclass
class ParityResult:
    """How closely ONNX Runtime reproduces torch on the same samples."""

    samples: int
    max_abs_diff: float
    max_rel_diff: float  # max |onnx - torch| / max |torch|
    top1_agreement: float
    atol: float
    rtol: float
    passed: bool
    batches: list[int]
    source: str = ""

    def summary(self) -> str:
        return (
            f"max abs diff {self.max_abs_diff:.3g}, max rel diff {self.max_rel_diff:.3g}, "
            f"top-1 agreement {100 * self.top1_agreement:.2f} % on {self.samples} samples "
            f"(atol {self.atol:g}, rtol {self.rtol:g})"
        )


def _first_output(out):
    import torch

    while isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if not isinstance(out, torch.Tensor):
        raise QtoolError(f"the model returned {type(out).__name__}; qtool needs a tensor output")
    return out


def _batches(samples: np.ndarray, static_batch: int | None) -> tuple[np.ndarray, list]:
    """The samples used (a static batch drops the remainder) and the batches to run."""
    if static_batch:
        usable = len(samples) - len(samples) % static_batch
        samples = samples[: max(usable, 0)]
        chunks = [samples[i : i + static_batch] for i in range(0, len(samples), static_batch)]
    else:
        chunks = [samples[:1]] + [
            samples[i : i + PARITY_BATCH] for i in range(0, len(samples), PARITY_BATCH)
        ]
    if not chunks or not len(samples):
        raise QtoolError("no samples for the parity check")
    return samples, chunks


def _scores(module, model_bytes: bytes, chunks: list) -> tuple[np.ndarray, np.ndarray]:
    """(torch, onnx) scores of every batch, one row per sample."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    ref_parts, got_parts = [], []
    module = module.eval()
    with torch.no_grad(), torch_threads(1):
        for chunk in chunks:
            ref_parts.append(_first_output(module(torch.from_numpy(chunk))).numpy())
            got_parts.append(session.run(None, {name: chunk})[0])
    ref = np.concatenate([r.reshape(len(r), -1) for r in ref_parts])
    got = np.concatenate([g.reshape(len(g), -1) for g in got_parts])
    return ref, got


def check_parity(
    module,
    model_bytes: bytes,
    samples: np.ndarray,
    *,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    static_batch: int | None = None,
    source: str = "",
) -> ParityResult:
    """Run `samples` (already prepared: shaped and normalised) through torch and ORT."""
    samples, chunks = _batches(np.ascontiguousarray(samples, dtype=np.float32), static_batch)
    ref, got = _scores(module, model_bytes, chunks)
    if ref.shape != got.shape:
        return ParityResult(
            len(ref), float("inf"), float("inf"), 0.0, atol, rtol, False,
            [len(c) for c in chunks], source,
        )  # fmt: skip
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    finite = bool(np.isfinite(got).all() and np.isfinite(ref).all())
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    passed = finite and bool(np.all(diff <= atol + rtol * np.abs(ref)))
    top1 = float(np.mean(np.argmax(got, axis=1) == np.argmax(ref, axis=1))) if ref.size else 1.0
    return ParityResult(
        samples=int(len(samples)),
        max_abs_diff=max_abs if finite else float("inf"),
        max_rel_diff=(max_abs / scale if scale else max_abs) if finite else float("inf"),
        top1_agreement=top1,
        atol=float(atol),
        rtol=float(rtol),
        passed=passed,
        batches=sorted({len(c) for c in chunks}),
        source=source,
    )
