"""The execution provider a bundle was validated on, and the one `predict` runs it on.

`package --provider` records in the manifest's `runtime` the provider (and precision) the
model was checked on: usable where it was packaged, and the model loads on it. `predict`
runs on that provider unless told otherwise. When the recorded provider cannot be used on
the server (e.g. OpenVINO on a CPU its plugin does not serve), predict refuses, naming why
and the way out (`--provider cpu` runs it on the CPU provider deliberately): a bundle is
validated on one provider's kernels, and switching silently would run numbers nobody
checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from qtool.errors import QtoolError
from qtool.runtimes.providers import DEFAULT_PRECISION, PROVIDERS, provider_spec
from qtool.runtimes.session import make_session


def validated_runtime(model: Path | bytes, provider: str, precision: str) -> dict:
    """The manifest's `runtime`: the provider must be usable here and load the model."""
    spec = provider_spec(provider, param="provider")
    spec.check_precision(precision)
    make_session(model, [spec.name], threads=1, precision=precision)
    facts = spec.describe(precision)
    return {
        "provider": spec.name,
        "ort_name": spec.ort_name,
        "precision": precision,
        "precision_detail": facts["precision"],
        "plugin": facts.get("plugin"),
        "onnxruntime": ort.__version__,
        "checked": "the model loaded on this provider when it was packaged",
    }


@dataclass(frozen=True)
class RunChoice:
    provider: str
    precision: str
    why: str  # asked, recorded in the bundle, or the default


def choose_runtime(
    manifest: dict, providers: list[str] | None = None, precision: str | None = None
) -> RunChoice:
    """The provider predict runs on: the first usable of `providers` when given, else the
    one recorded in the bundle (refused with the reason when unusable here), else cpu."""
    recorded = manifest.get("runtime") or {}
    if providers:
        usable = [
            n for n in providers if n in PROVIDERS and PROVIDERS.get(n).unusable_reason() is None
        ]
        spec = provider_spec(usable[0] if usable else providers[0], param="providers")
        mode = precision or recorded.get("precision") or DEFAULT_PRECISION
        return RunChoice(spec.name, mode, "asked")
    if not recorded:
        return RunChoice("cpu", precision or DEFAULT_PRECISION, "default (none recorded)")
    name, mode = recorded["provider"], precision or recorded.get("precision", DEFAULT_PRECISION)
    reason = (
        "unknown to this qtool" if name not in PROVIDERS else PROVIDERS.get(name).unusable_reason()
    )
    if reason is not None:
        raise QtoolError(
            f"the bundle was validated on execution provider {name} ({mode}), which cannot be "
            f"used here: {reason}. Name another provider to run it there deliberately (e.g. "
            "cpu; its accuracy was not checked on that provider), or run it on a server where "
            f"{name} is usable",
            param="providers",
        )
    return RunChoice(name, mode, "recorded in the bundle at packaging")


def _usable(name: str) -> bool:
    return name in PROVIDERS and PROVIDERS.get(name).unusable_reason() is None
