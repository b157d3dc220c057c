"""Export a zoo checkpoint or a user `file.py:factory` model to a parity-checked ONNX file.

Order of work, so that a failure leaves nothing behind: export in memory, add metadata, run
onnx.checker, run the parity check in ONNX Runtime, and only then write the file atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qtool import __version__
from qtool.data.datasets import fit_to_input, load_dataset, normalize
from qtool.errors import QtoolError, WorkFailed
from qtool.modelfile.load import sha256_file
from qtool.modelfile.metadata import set_metadata
from qtool.modelfile.save import save_model
from qtool.modelfile.summary import count_flops
from qtool.outputs import check_output_path

PARITY_SAMPLES = 256


@dataclass
class ExportReport:
    """What `qtool export` prints and returns."""

    out: str
    model: str
    exporter: str
    opset: int
    dynamic_batch: bool
    input_shape: list[int]
    parity: dict
    file_bytes: int
    parameters: int
    flops: int
    seconds: float
    metadata: dict = field(default_factory=dict)


def export_model(
    model: str,
    out: str | Path,
    *,
    weights: str | Path | None = None,
    opset: int | None = None,
    static_batch: bool = False,
    exporter: str = "dynamo",
    atol: float = 1e-4,
    rtol: float = 1e-3,
    input_shape: str | tuple[int, ...] | None = None,
    data_spec: str | None = None,
    samples: int = PARITY_SAMPLES,
    seed: int = 0,
    force: bool = False,
) -> ExportReport:
    """Export MODEL (zoo name with --weights, or path/to/file.py:factory) to `out`.

    Raises QtoolError for bad input and WorkFailed when the exporter fails or ONNX Runtime
    disagrees with torch beyond atol + rtol * |torch|; then no file is written.
    """
    import onnx

    from qtool.exporters.pytorch import (
        DEFAULT_OPSET,
        EXPORTERS,
        check_parity,
        export_onnx,
        is_factory_spec,
        load_factory,
        parse_input_shape,
    )
    from qtool.models import ZOO

    start = time.perf_counter()
    if exporter not in EXPORTERS:
        raise QtoolError(f"unknown exporter {exporter!r}: use {' or '.join(EXPORTERS)}")
    if atol < 0 or rtol < 0:
        raise QtoolError("--atol and --rtol must be zero or positive")
    weights = Path(weights) if weights is not None else None
    shape = parse_input_shape(input_shape) if isinstance(input_shape, str) else input_shape
    meta: dict[str, object] = {"qtool.version": __version__}
    source_file = None

    if model in ZOO:
        check_output_path(out, force=force, inputs=(weights,))
        module, config, meta_zoo = _zoo_module(model, weights, shape)
        shape = tuple(config["input_shape"])
        meta.update(meta_zoo)
        spec_for_samples = data_spec or config["dataset"]
        x = _real_samples(spec_for_samples, shape, config["normalization"], samples, seed)
        sample_source = f"{spec_for_samples} (test split)"
    elif is_factory_spec(model):
        if shape is None:
            raise QtoolError(
                f"{model} is a user model: give its input shape with --input-shape, "
                "e.g. --input-shape 1,3,224,224"
            )
        check_output_path(out, force=force, inputs=(weights, Path(model.rpartition(":")[0])))
        module, source_file = load_factory(model)
        from qtool.models.checkpoint import load_weights_into, state_dict_sha256

        if weights is not None:
            load_weights_into(module, weights)
        else:
            meta["qtool.weights_source"] = "factory initialisation (no --weights)"
        meta["qtool.weights_sha256"] = state_dict_sha256(module.state_dict())
        meta["qtool.model"] = model
        meta["qtool.source_sha256"] = sha256_file(source_file)
        if data_spec:
            x = _real_samples(data_spec, shape, None, samples, seed)
            sample_source = f"{data_spec} (test split)"
        else:
            count = min(samples, 64)
            x = np.random.default_rng(seed).standard_normal((count, *shape[1:]))
            x = x.astype(np.float32)
            sample_source = f"random normal samples (seed {seed})"
            meta["qtool.seed"] = seed
    else:
        raise QtoolError(
            f"unknown model {model!r}: give a zoo name ({', '.join(ZOO)}) or "
            "path/to/file.py:factory"
        )
    inputs = tuple(p for p in (weights, source_file) if p is not None)
    out = check_output_path(out, force=force, inputs=inputs)

    opset = DEFAULT_OPSET[exporter] if opset is None else int(opset)
    proto = export_onnx(
        module, tuple(shape), opset=opset, dynamic_batch=not static_batch, exporter=exporter
    )
    actual_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    meta.update(
        {
            "qtool.exporter": exporter,
            "qtool.opset": actual_opset,
            "qtool.input_shape": list(shape),
            "qtool.dynamic_batch": not static_batch,
        }
    )
    proto.producer_name = "qtool"
    proto.producer_version = __version__
    set_metadata(proto, meta)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WorkFailed(f"the exported model fails the ONNX checker: {first}") from exc
    parity = check_parity(
        module,
        proto.SerializeToString(),
        x,
        atol=atol,
        rtol=rtol,
        static_batch=shape[0] if static_batch else None,
        source=sample_source,
    )
    if not parity.passed:
        raise WorkFailed(
            f"parity check failed, no file written: {parity.summary()}; "
            "the ONNX model does not compute what the torch model computes"
        )
    set_metadata(proto, {"qtool.parity": vars(parity)})
    save_model(proto, out)
    from qtool.modelfile.summary import summarize

    summary = summarize(out)
    return ExportReport(
        out=str(out),
        model=model,
        exporter=exporter,
        opset=actual_opset,
        dynamic_batch=not static_batch,
        input_shape=list(shape),
        parity=vars(parity),
        file_bytes=summary.file_bytes,
        parameters=summary.parameters,
        flops=count_flops(proto),
        seconds=time.perf_counter() - start,
        metadata={k: v for k, v in summary.metadata.items()},
    )


def _zoo_module(name: str, weights: Path | None, shape):
    from qtool.models.checkpoint import build_from_checkpoint, load_checkpoint

    if weights is None:
        raise QtoolError(
            f"zoo model {name} needs its trained weights: --weights CKPT "
            f"(make one with qtool train {name} --out {name}.pt)"
        )
    checkpoint = load_checkpoint(weights)
    config = checkpoint["config"]
    if config.get("model") != name:
        raise QtoolError(
            f"{weights} holds a {config.get('model')!r} model, not {name!r}: "
            f"run qtool export {config.get('model')} --weights {weights} ..."
        )
    if shape is not None and tuple(shape[1:]) != tuple(config["input_shape"][1:]):
        raise QtoolError(
            f"--input-shape {','.join(map(str, shape))} does not match the shape {name} was "
            f"trained for ({','.join(map(str, config['input_shape']))}); drop --input-shape"
        )
    module = build_from_checkpoint(checkpoint, weights)
    from qtool.models.checkpoint import state_dict_sha256

    meta = {
        "qtool.model": name,
        "qtool.dataset": config.get("dataset"),
        "qtool.normalization": config.get("normalization"),
        "qtool.class_names": config.get("class_names"),
        # of the weights, not the file: the checkpoint also holds run details (train time),
        # and the same seed must give the same ONNX bytes (campaign draws key on them)
        "qtool.weights_sha256": state_dict_sha256(checkpoint["state_dict"]),
        "qtool.seed": config.get("seed"),
        "qtool.training": {
            k: config.get(k)
            for k in ("epochs", "best_epoch", "val_accuracy", "test_accuracy", "lr", "threads")
        },
    }
    return module, config, {k: v for k, v in meta.items() if v is not None}


def _real_samples(spec: str, shape, norm: dict | None, count: int, seed: int) -> np.ndarray:
    """Test-split samples fitted to the input shape and normalised as the model expects."""
    data = load_dataset(spec, default_split="test").take(count, seed)
    x = fit_to_input(data.x, list(shape))
    if norm:
        x = normalize(x, norm.get("mean"), norm.get("std"))
    return np.ascontiguousarray(x, dtype=np.float32)
