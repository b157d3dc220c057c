"""Execution providers as specs: one registry entry per provider qtool knows, in this file.

A spec says how the provider is made available (built into the onnxruntime wheel, or a plugin
library a Python package ships and `onnxruntime.register_execution_provider_library` loads),
which provider options it gets, how its thread count is pinned, what precision its kernels run
at, and, when it cannot be used here, why. `make_session` builds every session through a spec,
so bench, eval, quantize, campaigns and predict all pin threads and pass options alike.

Entries: `cpu` (the default), declared below; then one generic entry for every other provider
the installed onnxruntime names (`get_all_providers()`), usable when this build has it.
GPU, NPU, mobile, browser and remote providers are out of scope (qtool targets CPU servers):
they are listed with that reason and never used.

Adding a provider is adding one `PROVIDERS.add(...)` below; a plugin (e.g. OpenVINO from
`pip install onnxruntime-ep-openvino`) gives a `PluginLibrary` that says where its library is.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType

import onnxruntime as ort

from qtool.errors import QtoolError
from qtool.registry import Registry

BUILT_IN = "built in"  # part of the onnxruntime wheel, listed by get_available_providers()
PLUGIN = "plugin"  # a library registered with register_execution_provider_library
SESSION_THREADS = "session intra_op_num_threads"
GENERIC_PRECISION = (
    "not recorded by qtool: the provider's own kernels; ops it does not take fall back to "
    "the CPU provider"
)
# Providers onnxruntime can be built with that do not run on a CPU server, by why not: qtool
# targets CPU servers, so these are listed and never used.
OUT_OF_SCOPE = {
    "out of scope: GPU": (
        "CUDA",
        "Tensorrt",
        "NvTensorRTRTX",
        "MIGraphX",
        "ROCM",
        "Dml",
        "WebGpu",
    ),
    "out of scope: NPU, mobile or browser": (
        "QNN",
        "Nnapi",
        "CoreML",
        "VitisAI",
        "Rknpu",
        "VSINPU",
        "CANN",
        "SNPE",
        "Js",
        "WebNN",
    ),
    "out of scope: runs remote Azure endpoints": ("Azure",),
}


@dataclass(frozen=True)
class PluginLibrary:
    """How a plugin provider is made available: a Python package that ships its library.

    `library_path(module)` returns the shared library's path from the imported package. The
    library is registered with onnxruntime once per process, then the provider's devices are
    taken from `onnxruntime.get_ep_devices()` and added with
    `SessionOptions.add_provider_for_devices`.
    """

    pip_name: str  # what a user installs, e.g. onnxruntime-ep-openvino
    module: str  # its import name
    library_path: Callable[[ModuleType], str]
    registration_name: str
    device_type: str = "CPU"  # OrtHardwareDeviceType name of the devices to use

    def devices(self, ep_name: str) -> list:
        """This provider's devices of `device_type`, registering the library first if needed."""
        if self.registration_name not in _REGISTERED:
            module = importlib.import_module(self.module)
            ort.register_execution_provider_library(
                self.registration_name, str(self.library_path(module))
            )
            _REGISTERED.add(self.registration_name)
        return [
            d
            for d in ort.get_ep_devices()
            if d.ep_name == ep_name and d.device.type.name == self.device_type
        ]


_REGISTERED: set[str] = set()  # plugin libraries registered with onnxruntime in this process


@dataclass(frozen=True)
class ProviderSpec:
    """What qtool knows about one execution provider."""

    name: str  # qtool's name: cpu, dnnl, ...
    ort_name: str  # onnxruntime's name: CPUExecutionProvider, ...
    description: str
    options: Mapping[str, str] = field(default_factory=dict)
    thread_option: str | None = None  # a provider option that pins its own threads, if any
    precision: str = GENERIC_PRECISION
    plugin: PluginLibrary | None = None
    out_of_scope: str | None = None

    @property
    def source(self) -> str:
        return PLUGIN if self.plugin else BUILT_IN

    @property
    def threads_pinned_by(self) -> str:
        own = f" and provider option {self.thread_option}" if self.thread_option else ""
        return SESSION_THREADS + own

    def unusable_reason(self) -> str | None:
        """Why this provider cannot run here, or None when it can.

        For a plugin this registers its library (once) to ask for its devices."""
        if self.out_of_scope:
            return self.out_of_scope
        if self.plugin is None:
            if self.ort_name in ort.get_available_providers():
                return None
            return f"not in this onnxruntime build ({ort.__version__})"
        try:
            found = self.plugin.devices(self.ort_name)
        except ImportError:
            return f"needs its plugin package: pip install {self.plugin.pip_name}"
        except Exception as exc:  # onnxruntime raises its own types for a bad library
            return f"its plugin library failed to register: {_first_line(exc)}"
        if not found:
            return f"{self.plugin.pip_name} offers no {self.plugin.device_type} device here"
        return None

    def provider_options(self, threads: int | None) -> dict[str, str]:
        options = {k: str(v) for k, v in self.options.items()}
        if threads and self.thread_option:
            options[self.thread_option] = str(int(threads))
        return options

    def attach(self, options: ort.SessionOptions, threads: int | None) -> tuple | None:
        """Make this provider part of a session: a plugin is added to `options` (returns
        None); a built-in one returns the (name, provider options) pair for `providers=`."""
        if self.plugin is None:
            return (self.ort_name, self.provider_options(threads))
        devices = self.plugin.devices(self.ort_name)
        options.add_provider_for_devices(devices, self.provider_options(threads))
        return None

    def describe(self) -> dict:
        """The facts a report records about the provider it measured."""
        return {
            "name": self.name,
            "ort_name": self.ort_name,
            "source": self.source,
            "options": dict(self.options),
            "threads_pinned_by": self.threads_pinned_by,
            "precision": self.precision,
        }


PROVIDERS: Registry[ProviderSpec] = Registry("execution provider")

PROVIDERS.add(
    "cpu",
    ProviderSpec(
        name="cpu",
        ort_name="CPUExecutionProvider",
        description="onnxruntime's default CPU kernels (MLAS)",
        precision=(
            "float ops run FP32 kernels; quantised ops (QLinear*, MatMulInteger/ConvInteger, "
            "and QDQ groups fused at graph optimisation) run INT8 (u8/s8) kernels; a "
            "DequantizeLinear left unfused feeds an FP32 kernel"
        ),
    ),
    aliases=("CPUExecutionProvider",),
)


def _short_name(ort_name: str) -> str:
    return ort_name.removesuffix("ExecutionProvider").lower()


def _out_of_scope(ort_name: str) -> str | None:
    prefix = ort_name.removesuffix("ExecutionProvider")
    return next((why for why, names in OUT_OF_SCOPE.items() if prefix in names), None)


def _add_generic_entries() -> None:
    """One entry for every provider onnxruntime names that no declared spec covers."""
    declared = {spec.ort_name for spec in PROVIDERS}
    names = dict.fromkeys([*ort.get_available_providers(), *ort.get_all_providers()])
    for ort_name in names:
        if ort_name in declared or _short_name(ort_name) in PROVIDERS:
            continue
        spec = ProviderSpec(
            name=_short_name(ort_name),
            ort_name=ort_name,
            description="generic entry for a provider onnxruntime names",
            out_of_scope=_out_of_scope(ort_name),
        )
        PROVIDERS.add(spec.name, spec, aliases=(ort_name,))


_add_generic_entries()


@dataclass
class ProviderStatus:
    """One row of the provider list: a spec and whether (or why not) it runs here."""

    spec: ProviderSpec
    reason: str | None

    @property
    def usable(self) -> bool:
        return self.reason is None


def list_providers() -> list[ProviderStatus]:
    """Every provider qtool knows, each with why it is not usable here: usable ones first,
    then CPU providers this install lacks, then out-of-scope ones (registry order within)."""
    rows = [ProviderStatus(spec, spec.unusable_reason()) for spec in PROVIDERS]
    return sorted(rows, key=lambda row: (not row.usable, row.spec.out_of_scope is not None))


def provider_spec(name: str, *, param: str | None = "providers") -> ProviderSpec:
    """The usable spec for a name or alias (cpu, CPUExecutionProvider); bad input otherwise."""
    if name not in PROVIDERS:
        raise QtoolError(
            f"unknown execution provider {name!r}; {_choices(name)}",
            param=param,
        )
    spec = PROVIDERS.get(name)
    reason = spec.unusable_reason()
    if reason is not None:
        raise QtoolError(
            f"execution provider {name!r} ({spec.ort_name}) cannot be used here: {reason}; "
            f"{_choices(name)}",
            param=param,
        )
    return spec


def _choices(asked: str) -> str:
    """The usable providers, and the CPU ones this install lacks (out-of-scope ones are
    never usable, so they are left to the provider list)."""
    rows = list_providers()
    usable = ", ".join(f"{r.spec.name} ({r.spec.ort_name})" for r in rows if r.usable)
    missing = [
        r.spec.name
        for r in rows
        if not r.usable and not r.spec.out_of_scope and r.spec.name != asked
    ]
    return f"usable here: {usable}" + (
        f"; CPU providers not usable here: {', '.join(missing)}" if missing else ""
    )


def provider_specs(
    names: list[str] | tuple[str, ...] | None, *, param: str | None = "providers"
) -> list[ProviderSpec]:
    """Specs in priority order (default: cpu). A plugin provider runs alone in its session."""
    specs = [provider_spec(n, param=param) for n in (names or ["cpu"])]
    if len(specs) > 1 and any(s.plugin for s in specs):
        raise QtoolError(
            "a plugin execution provider must be the only provider of a session "
            f"(got {', '.join(s.name for s in specs)}); onnxruntime adds the CPU fallback itself",
            param=param,
        )
    return specs


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
