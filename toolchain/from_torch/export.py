"""Export a zoo checkpoint or a user `file.py:factory` model to a parity-checked ONNX file.

Order of work, so that a failure leaves nothing behind: export in memory, add metadata, run
onnx.checker, run the parity check in ONNX Runtime, and only then write the file atomically.
The engine (exporters, parity) is `qtool.exporters`; this stage finds the module, its input
shape and real samples, and records what later stages need in the file's metadata.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qtool import __version__
from qtool.data.datasets import fit_to_input, load_dataset, normalize
from qtool.errors import QtoolError, WorkFailed
from qtool.from_torch.describe import DESCRIBED, check_class_count, describe
from qtool.modelfile.load import sha256_file
from qtool.modelfile.metadata import qtool_metadata, set_metadata
from qtool.modelfile.roles import mark_fixed_convs
from qtool.modelfile.save import save_model
from qtool.modelfile.summary import count_flops, summarize
from qtool.outputs import check_output_path

PARITY_SAMPLES = 256
USER_RANDOM_SAMPLES = 64


@dataclass(frozen=True)
class ExportSettings:
    """How to export and how strictly to check: exporter, opset, batch, parity samples."""

    exporter: str = "dynamo"
    opset: int | None = None  # None: the exporter's default
    static_batch: bool = False
    atol: float = 1e-4
    rtol: float = 1e-3
    input_shape: tuple[int, ...] | None = None  # batch first; required for user models
    data_spec: str | None = None  # parity samples (default: the model's own data set)
    samples: int = PARITY_SAMPLES
    seed: int = 0
    # how the model is described for later stages (zoo models: from the checkpoint)
    class_names: tuple[str, ...] | None = None
    normalization: dict | None = None  # {"mean": [...], "std": [...]}: one value or per channel
    positive_class: str | None = None  # a class name, for two-class models


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
    weights_read: str | None = None  # where in the weights file the state_dict was found
    described: dict = field(default_factory=dict)  # class_names, normalization, positive_class


@dataclass
class _Source:
    """A module to export, with its input shape, metadata so far and parity samples."""

    module: object
    shape: tuple[int, ...]
    meta: dict
    samples: np.ndarray
    sample_source: str
    files: tuple[Path, ...]  # the files it was read from (never overwritten)
    weights_read: str | None = None


def export_model(
    model: str,
    out: str | Path,
    *,
    weights: str | Path | None = None,
    settings: ExportSettings | None = None,
    force: bool = False,
) -> ExportReport:
    """Export MODEL (a zoo name with its checkpoint as `weights`, or path/to/file.py:factory
    with optional state_dict `weights`) to `out`.

    Raises QtoolError for bad input and WorkFailed when the exporter fails or ONNX Runtime
    disagrees with torch beyond atol + rtol * |torch|; then no file is written.
    """
    from qtool.exporters.pytorch import get_exporter, is_factory_spec
    from qtool.models import ZOO

    start = time.perf_counter()
    settings = settings or ExportSettings()
    get_exporter(settings.exporter)
    for name in ("atol", "rtol"):
        if getattr(settings, name) < 0:
            raise QtoolError(f"{name} must be zero or positive", param=name)
    weights = Path(weights) if weights is not None else None
    if model in ZOO:
        check_output_path(out, force=force, inputs=(weights,), param="out")
        source = _zoo_source(model, weights, settings)
    elif is_factory_spec(model):
        source = _factory_source(model, weights, settings, out, force)
    else:
        raise QtoolError(
            f"unknown model {model!r}: give a zoo name ({', '.join(ZOO)}) or "
            "path/to/file.py:factory",
            param="model",
        )
    out = check_output_path(out, force=force, inputs=source.files, param="out")
    proto, parity = _export_checked(source, settings)
    save_model(proto, out)
    summary = summarize(out)
    return ExportReport(
        out=str(out),
        model=model,
        exporter=settings.exporter,
        opset=source.meta["qtool.opset"],
        dynamic_batch=not settings.static_batch,
        input_shape=list(source.shape),
        parity=vars(parity),
        file_bytes=summary.file_bytes,
        parameters=summary.parameters,
        flops=count_flops(proto),
        seconds=time.perf_counter() - start,
        metadata=dict(summary.metadata),
        weights_read=source.weights_read,
        described={k: v for k, v in qtool_metadata(proto).items() if k in DESCRIBED},
    )


def _export_checked(source: _Source, settings: ExportSettings):
    """The exported ModelProto with its metadata, checked by onnx.checker and for parity."""
    import onnx

    from qtool.exporters.parity import check_parity
    from qtool.exporters.pytorch import export_onnx, get_exporter

    exporter = get_exporter(settings.exporter)
    opset = exporter.default_opset if settings.opset is None else int(settings.opset)
    proto = export_onnx(
        source.module,
        tuple(source.shape),
        opset=opset,
        dynamic_batch=not settings.static_batch,
        exporter=exporter.name,
    )
    check_class_count(source.meta, proto)
    # one-hot gather Convs (self-attention's export form) are data movement, not weights
    mark_fixed_convs(proto)
    actual_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    source.meta.update(
        {
            "qtool.exporter": exporter.name,
            "qtool.opset": actual_opset,
            "qtool.input_shape": list(source.shape),
            "qtool.dynamic_batch": not settings.static_batch,
        }
    )
    proto.producer_name = "qtool"
    proto.producer_version = __version__
    set_metadata(proto, source.meta)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WorkFailed(f"the exported model fails the ONNX checker: {first}") from exc
    parity = check_parity(
        source.module,
        proto.SerializeToString(),
        source.samples,
        atol=settings.atol,
        rtol=settings.rtol,
        static_batch=source.shape[0] if settings.static_batch else None,
        source=source.sample_source,
    )
    if not parity.passed:
        raise WorkFailed(
            f"parity check failed, no file written: {parity.summary()}; "
            "the ONNX model does not compute what the torch model computes"
        )
    set_metadata(proto, {"qtool.parity": vars(parity)})
    return proto, parity


# --- where the module comes from -------------------------------------------------------------


def _zoo_source(name: str, weights: Path | None, settings: ExportSettings) -> _Source:
    from qtool.models.checkpoint import build_from_checkpoint, load_checkpoint, state_dict_sha256

    if weights is None:
        raise QtoolError(
            f"zoo model {name} needs its trained weights: give the checkpoint written by "
            f"training it (qtool train {name})",
            param="weights",
        )
    checkpoint = load_checkpoint(weights)
    config = checkpoint["config"]
    if config.get("model") != name:
        raise QtoolError(
            f"{weights} holds a {config.get('model')!r} model, not {name!r}: "
            f"export it as {config.get('model')}",
            param="weights",
        )
    shape = settings.input_shape
    if shape is not None and tuple(shape[1:]) != tuple(config["input_shape"][1:]):
        raise QtoolError(
            f"input shape {','.join(map(str, shape))} does not match the shape {name} was "
            f"trained for ({','.join(map(str, config['input_shape']))}); leave it out for "
            "zoo models",
            param="input_shape",
        )
    module = build_from_checkpoint(checkpoint, weights)
    meta = {
        "qtool.model": name,
        # size, width, depth; left out for the default network (checkpoints from before
        # sizes, and the demo's models, whose ONNX bytes, and so flip draws, stay as they were)
        "qtool.architecture": _non_default(name, config.get("architecture")),
        "qtool.dataset": config.get("dataset"),
        "qtool.normalization": config.get("normalization"),
        "qtool.class_names": config.get("class_names"),
        # of the weights, not the file: the checkpoint also holds run details (train time),
        # and the same seed must give the same ONNX bytes (campaign draws key on them)
        "qtool.weights_sha256": state_dict_sha256(checkpoint["state_dict"]),
        "qtool.seed": config.get("seed"),
        "qtool.training": _training(checkpoint),
    }
    spec = settings.data_spec or config["dataset"]
    shape = tuple(config["input_shape"])
    meta = {"qtool.version": __version__, **{k: v for k, v in meta.items() if v is not None}}
    meta.update(describe(meta, settings, shape, zoo=True))
    return _Source(
        module=module,
        shape=shape,
        meta=meta,
        samples=_real_samples(spec, shape, config["normalization"], settings),
        sample_source=f"{spec} (test split)",
        files=(weights,),
        weights_read="the qtool checkpoint's state_dict",
    )


def _non_default(name: str, architecture: dict | None) -> dict | None:
    from qtool.models import get_spec

    default = get_spec(name).architecture()
    return None if architecture in (None, default) else architecture


TRAINING_KEYS = ("epochs", "epochs_done", "best_epoch", "val_accuracy", "test_accuracy", "lr")


def _training(checkpoint: dict) -> dict:
    """How the weights were trained; a checkpoint of an unfinished run (train --time-budget,
    Ctrl-C) exports its best epoch so far and is marked partial."""
    config = checkpoint["config"]
    out = {k: config.get(k) for k in (*TRAINING_KEYS, "threads")}
    out["partial"] = "resume" in checkpoint
    return out


def _factory_source(
    spec: str, weights: Path | None, settings: ExportSettings, out: str | Path, force: bool
) -> _Source:
    from qtool.exporters.pytorch import load_factory
    from qtool.models.checkpoint import load_weights_into, state_dict_sha256

    shape = settings.input_shape
    if shape is None:
        raise QtoolError(
            f"{spec} is a user model: give its input shape, batch first, e.g. 1,3,224,224",
            param="input_shape",
        )
    source_file = Path(spec.rpartition(":")[0])
    check_output_path(out, force=force, inputs=(weights, source_file), param="out")
    module, source_file = load_factory(spec)
    meta: dict[str, object] = {"qtool.version": __version__}
    weights_read = None
    if weights is not None:
        weights_read = load_weights_into(module, weights)
    else:
        meta["qtool.weights_source"] = "factory initialisation (no weights file)"
    meta["qtool.weights_sha256"] = state_dict_sha256(module.state_dict())
    meta["qtool.model"] = spec
    meta["qtool.source_sha256"] = sha256_file(source_file)
    meta.update(describe(meta, settings, tuple(shape), zoo=False))
    if settings.data_spec:
        samples = _real_samples(settings.data_spec, shape, settings.normalization, settings)
        sample_source = f"{settings.data_spec} (test split)"
    else:
        rng = np.random.default_rng(settings.seed)
        count = min(settings.samples, USER_RANDOM_SAMPLES)
        samples = rng.standard_normal((count, *shape[1:])).astype(np.float32)
        sample_source = f"random normal samples (seed {settings.seed})"
        meta["qtool.seed"] = settings.seed
    files = tuple(p for p in (weights, source_file) if p is not None)
    return _Source(module, tuple(shape), meta, samples, sample_source, files, weights_read)


def _real_samples(
    spec: str, shape: tuple[int, ...], norm: dict | None, settings: ExportSettings
) -> np.ndarray:
    """Test-split samples fitted to the input shape and normalised as the model expects."""
    data = load_dataset(spec, default_split="test").take(settings.samples, settings.seed)
    x = fit_to_input(data.x, list(shape))
    if norm:
        x = normalize(x, norm.get("mean"), norm.get("std"))
    return np.ascontiguousarray(x, dtype=np.float32)
