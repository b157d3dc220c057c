"""qtool checkpoints: a plain dict of tensors and JSON-like config, loaded weights-only.

A checkpoint is `torch.save` of {"format": "qtool-checkpoint", "version": 1, "state_dict":
..., "config": {...}}. Loading always uses `torch.load(weights_only=True)`, so a file holding
pickled Python objects (which could run code when loaded) is refused instead of executed.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

from qtool.errors import QtoolError
from qtool.outputs import atomic_write

FORMAT = "qtool-checkpoint"
VERSION = 1


def save_checkpoint(
    state_dict: dict, config: dict, out: str | Path, resume: dict | None = None
) -> Path:
    """Write a checkpoint atomically (qtool.outputs: temp file beside `out`, then rename).

    `resume` (qtool.models.train_state.snapshot) makes it a checkpoint of an unfinished run
    that `qtool train --resume` continues; a finished run's checkpoint leaves it out.
    """
    import torch

    out = Path(out)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        # a JSON round trip keeps the config to plain types that weights-only loading accepts
        # (torch.__version__ is a str subclass, numpy floats are not plain floats)
        "config": json.loads(json.dumps(config, default=_plain)),
    }
    if resume is not None:
        payload["resume"] = resume
    return atomic_write(out, lambda tmp: torch.save(payload, tmp))


def _plain(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _torch_load(path: Path) -> object:
    import torch

    if not path.exists():
        raise QtoolError(f"weights file {path} does not exist: check the path")
    if path.is_dir():
        raise QtoolError(f"{path} is a directory, not a weights file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch names the class it refused ("Unsupported global: GLOBAL mod.Cls"); other
        # unpickling errors ("Unsupported operand 95") mean the bytes are no pickle at all
        if "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise QtoolError(
                f"{path} is not a weights-only checkpoint: it holds pickled Python objects, which "
                "qtool refuses to load (they can run code); save a state_dict or use qtool train"
            ) from exc
        raise QtoolError(
            f"{path} is not a PyTorch checkpoint (cannot unpickle it); check the file"
        ) from exc
    except Exception as exc:  # torch raises RuntimeError/EOFError/... for foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QtoolError(
            f"{path} is not a PyTorch checkpoint ({first[:120]}); check the file"
        ) from exc


def load_checkpoint(path: str | Path) -> dict:
    """Load and validate a qtool checkpoint; anything else is bad input (exit 2)."""
    path = Path(path)
    data = _torch_load(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise QtoolError(
            f"{path} is not a qtool checkpoint (no 'format: {FORMAT}' entry); "
            "make one with qtool train"
        )
    if data.get("version") != VERSION:
        raise QtoolError(
            f"{path} is a qtool checkpoint of version {data.get('version')!r}; this qtool reads "
            f"version {VERSION}: retrain with qtool train"
        )
    if not isinstance(data.get("state_dict"), dict) or not isinstance(data.get("config"), dict):
        raise QtoolError(f"{path} is a damaged qtool checkpoint (state_dict or config missing)")
    return data


# where a state_dict sits in a checkpoint someone else saved, tried in this order
STATE_DICT_ENTRIES = ("state_dict", "model_state_dict", "model")
PARALLEL_PREFIX = "module."  # DataParallel / DistributedDataParallel parameter names


def _is_state_dict(data: object) -> bool:
    import torch

    return (
        isinstance(data, dict)
        and bool(data)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items())
    )


def find_state_dict(data: object, path: str | Path = "checkpoint") -> tuple[dict, str]:
    """The parameter tensors in a loaded checkpoint, and where they were found: the file
    itself, a qtool checkpoint, or a `state_dict` / `model_state_dict` / `model` entry; a
    `module.` prefix on every name (DataParallel) is removed. Anything else is bad input."""
    if isinstance(data, dict) and data.get("format") == FORMAT:
        found, where = data.get("state_dict"), "the qtool checkpoint's state_dict"
    elif _is_state_dict(data):
        found, where = data, "the file's state_dict"
    else:
        entry = next((e for e in STATE_DICT_ENTRIES if isinstance(data, dict) and e in data), None)
        found = data.get(entry) if entry else None
        where = f"its {entry!r} entry"
    if not _is_state_dict(found):
        keys = ", ".join(map(str, list(data)[:8])) if isinstance(data, dict) else ""
        holds = f"its top-level keys are {keys}" if keys else f"it holds a {type(data).__name__}"
        raise QtoolError(
            f"{path} holds no state_dict (a dict of parameter names to tensors, at the top or "
            f"under {', '.join(repr(e) for e in STATE_DICT_ENTRIES)}); {holds}: save one with "
            "torch.save(model.state_dict(), path)"
        )
    if all(k.startswith(PARALLEL_PREFIX) for k in found):
        found = {k[len(PARALLEL_PREFIX) :]: v for k, v in found.items()}
        where += f", {PARALLEL_PREFIX!r} prefix removed (DataParallel)"
    return found, where


def load_state_dict(path: str | Path) -> dict:
    """The tensors of a qtool checkpoint or of a plain saved state_dict (weights-only)."""
    return read_state_dict(path)[0]


def read_state_dict(path: str | Path) -> tuple[dict, str]:
    """(tensors, where they were found) of a checkpoint file, read weights-only."""
    path = Path(path)
    return find_state_dict(_torch_load(path), path)


def build_from_checkpoint(checkpoint: dict, source: str | Path = "checkpoint"):
    """The zoo module described by a checkpoint's config, with its weights, in eval mode."""
    from qtool.models.registry import get_spec

    config = checkpoint["config"]
    try:
        spec = get_spec(config["model"])
        arch = _architecture(spec, config, source)
        module = spec.build(config["input_shape"], len(config["class_names"]), arch)
    except KeyError as exc:
        raise QtoolError(
            f"{source}: checkpoint config lacks {exc}; retrain with qtool train"
        ) from exc
    _load_into(module, checkpoint["state_dict"], source)
    return module.eval()


def _architecture(spec, config: dict, source) -> dict:
    """The checkpoint's size/width/depth; checkpoints from before sizes existed hold the
    default (small) network."""
    recorded = config.get("architecture", {})
    try:
        return spec.architecture(**recorded)
    except (QtoolError, TypeError) as exc:
        raise QtoolError(
            f"{source}: the checkpoint's architecture {recorded!r} is not one qtool builds "
            f"({exc}); retrain with qtool train"
        ) from None


MISMATCH_NAMES = 4  # names listed per kind of mismatch; the counts give the rest


def _load_into(module, state_dict: dict, source) -> None:
    """Load strictly; a mismatch names the missing, unexpected and reshaped keys."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    reshaped = [
        f"{k} {list(state_dict[k].shape)} vs {list(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    parts = [
        _listed(f"{len(names)} {kind}", names)
        for kind, names in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("keys of another shape (file vs model)", reshaped),
        )
        if names
    ]
    if parts:
        raise QtoolError(
            f"the weights in {source} do not fit the model: {'; '.join(parts)}; pass the "
            "weights of this architecture"
        )
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise QtoolError(f"the weights in {source} do not fit the model ({first})") from exc


def _listed(head: str, names: list[str]) -> str:
    shown = ", ".join(names[:MISMATCH_NAMES])
    more = f", … {len(names) - MISMATCH_NAMES} more" if len(names) > MISMATCH_NAMES else ""
    return f"{head} ({shown}{more})"


def load_weights_into(module, path: str | Path) -> str:
    """Load a state_dict file (or qtool checkpoint) into a user module, strictly; returns
    where in the file the weights were found."""
    state_dict, where = read_state_dict(path)
    _load_into(module, state_dict, path)
    return where


def state_dict_sha256(state_dict: dict) -> str:
    """A digest of the weights themselves (names, dtypes, shapes, bytes), independent of files."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
