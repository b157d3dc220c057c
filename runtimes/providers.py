"""Execution providers as specs: one registry entry per provider qtool knows, in this file.

A spec says how the provider is made available (built into the onnxruntime wheel, or a plugin
library a Python package ships and `onnxruntime.register_execution_provider_library` loads),
which provider options it gets, how its thread count is pinned, what precision its kernels run
at, and, when it cannot be used here, why. `make_session` builds every session through a spec,
so bench, eval, quantize, campaigns and predict all pin threads and pass options alike.

Entries: `cpu` (the default) and `openvino` (the plugin package onnxruntime-ep-openvino,
extra `qtool[openvino]`), declared below; then one generic entry for every other provider
the installed onnxruntime names (`get_all_providers()`), usable when this build has it.
Precision is asked per session (PRECISIONS): `fp32` forbids reduced precision (a provider
qtool cannot pin refuses it), `auto` lets the provider choose; the report records which.
GPU, NPU, mobile, browser and remote providers are out of scope (qtool targets CPU servers):
they are listed with that reason and never used.

Adding a provider is adding one `PROVIDERS.add(...)` below; a plugin gives a `PluginLibrary`
(runtimes/plugins.py) that says where its library is and why it is not usable here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from qtool.errors import QtoolError
from qtool.registry import Registry
from qtool.runtimes.plugins import PluginLibrary

__all__ = [
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "PROVIDERS",
    "PluginLibrary",
    "ProviderSpec",
    "compared_specs",
    "list_providers",
    "provider_specs",
    "session_specs",
]

BUILT_IN = "built in"  # part of the onnxruntime wheel, listed by get_available_providers()
PLUGIN = "plugin"  # a library registered with register_execution_provider_library
SESSION_THREADS = "session intra_op_num_threads"
PRECISIONS = ("fp32", "auto")  # fp32: forbid reduced precision; auto: the provider's choice
DEFAULT_PRECISION = "fp32"
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
class ProviderSpec:
    """What qtool knows about one execution provider.

    `precision_modes` maps each precision qtool can ask of the provider (PRECISIONS) to what
    then runs; a mode it lacks cannot be asked. `configure(threads, precision)` gives the
    provider options that pin threads and precision where the provider has its own (e.g.
    OpenVINO's load_config); `thread_option` is the simpler case of one option holding the
    thread count.
    """

    name: str  # qtool's name: cpu, openvino, dnnl, ...
    ort_name: str  # onnxruntime's name: CPUExecutionProvider, ...
    description: str
    options: Mapping[str, str] = field(default_factory=dict)
    thread_option: str | None = None  # a provider option that pins its own threads, if any
    precision: str = GENERIC_PRECISION
    precision_modes: Mapping[str, str] = field(default_factory=lambda: {"auto": GENERIC_PRECISION})
    plugin: PluginLibrary | None = None
    out_of_scope: str | None = None
    configure: Callable[[int | None, str], dict[str, str]] | None = None
    threads_note: str | None = None  # how its own threads are pinned, when `configure` does it

    @property
    def source(self) -> str:
        return PLUGIN if self.plugin else BUILT_IN

    @property
    def threads_pinned_by(self) -> str:
        own = f" and provider option {self.thread_option}" if self.thread_option else ""
        own += f" and {self.threads_note}" if self.threads_note else ""
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
        reason = self.plugin.unusable_reason(self.ort_name)
        return reason if reason is not None else self._probe()

    def _probe(self) -> str | None:
        """Run one tiny session configured as qtool configures this plugin (1 thread, its
        default precision): a plugin that lists a device but refuses qtool's options is
        reported unusable with its own error, never discovered mid-run. Once per process."""
        if self.name not in _PROBED:
            try:
                options = ort.SessionOptions()
                options.log_severity_level = 3
                self.attach(options, 1, DEFAULT_PRECISION)
                session = ort.InferenceSession(_probe_model(), sess_options=options)
                session.run(None, {"x": np.ones((1, 4), dtype=np.float32)})
                _PROBED[self.name] = None
            except Exception as exc:  # onnxruntime raises its own types for a refused config
                text = str(exc).strip().splitlines()
                first = text[0] if text else type(exc).__name__
                _PROBED[self.name] = f"its plugin refused qtool's session configuration: {first}"
        return _PROBED[self.name]

    def check_precision(self, precision: str) -> None:
        """Refuse a precision qtool cannot pin on this provider (bad input, param precision)."""
        if precision not in PRECISIONS:
            raise QtoolError(
                f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}", param="precision"
            )
        if precision not in self.precision_modes:
            raise QtoolError(
                f"qtool cannot pin execution provider {self.name} ({self.ort_name}) to "
                f"{precision}: it has no option qtool knows for that; use precision "
                f"{' or '.join(self.precision_modes)} to run it at its own precision",
                param="precision",
            )

    def provider_options(
        self, threads: int | None, precision: str = DEFAULT_PRECISION
    ) -> dict[str, str]:
        """The provider options of a session with `threads` threads at `precision`."""
        self.check_precision(precision)
        options = {k: str(v) for k, v in self.options.items()}
        if threads and self.thread_option:
            options[self.thread_option] = str(int(threads))
        if self.configure is not None:
            options.update(self.configure(threads, precision))
        return options

    def attach(
        self, options: ort.SessionOptions, threads: int | None, precision: str = DEFAULT_PRECISION
    ) -> tuple | None:
        """Make this provider part of a session: a plugin is added to `options` (returns
        None); a built-in one returns the (name, provider options) pair for `providers=`."""
        provider_options = self.provider_options(threads, precision)
        if self.plugin is None:
            return (self.ort_name, provider_options)
        devices = self.plugin.devices(self.ort_name)
        options.add_provider_for_devices(devices, provider_options)
        return None

    def describe(self, precision: str | None = None) -> dict:
        """The facts a report records about the provider it measured (at `precision`)."""
        facts = {
            "name": self.name,
            "ort_name": self.ort_name,
            "source": self.source,
            "options": dict(self.options),
            "threads_pinned_by": self.threads_pinned_by,
            "precision": self.precision,
        }
        if self.plugin is not None:
            facts["plugin"] = {
                "package": self.plugin.pip_name,
                "version": self.plugin.installed_version(),
                "device_type": self.plugin.device_type,
            }
        if precision is not None:
            facts["precision_mode"] = precision
            facts["precision"] = self.precision_modes.get(precision, self.precision)
        return facts


PROVIDERS: Registry[ProviderSpec] = Registry("execution provider")
_PROBED: dict[str, str | None] = {}  # plugin provider -> why its probe session failed


def _probe_model() -> bytes:
    """A one-node float model (MatMul by a 4x2 constant) for the plugin probe."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(4, 2), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


_CPU_PRECISION = (
    "float ops run FP32 kernels; quantised ops (QLinear*, MatMulInteger/ConvInteger, "
    "and QDQ groups fused at graph optimisation) run INT8 (u8/s8) kernels; a "
    "DequantizeLinear left unfused feeds an FP32 kernel"
)
PROVIDERS.add(
    "cpu",
    ProviderSpec(
        name="cpu",
        ort_name="CPUExecutionProvider",
        description="onnxruntime's default CPU kernels (MLAS)",
        precision=_CPU_PRECISION,
        # MLAS has no reduced-precision path for float ops, so both modes run the same.
        precision_modes={"fp32": _CPU_PRECISION, "auto": _CPU_PRECISION},
    ),
    aliases=("CPUExecutionProvider",),
)


def _openvino_config(threads: int | None, precision: str) -> dict[str, str]:
    """OpenVINO properties through `load_config`, the only channel plugin 1.8 honours (it
    ignores num_of_threads / precision / num_streams provider options with a warning).
    Values as OpenVINO parses them: "f32" (OpenVINO 2026.4 refuses "F32"), thread counts
    as strings."""
    cpu = {"NUM_STREAMS": "1"}  # one inference at a time, like session.run
    if threads:
        cpu["INFERENCE_NUM_THREADS"] = str(int(threads))
    if precision == "fp32":
        cpu["INFERENCE_PRECISION_HINT"] = "f32"
    return {"load_config": json.dumps({"CPU": cpu}, sort_keys=True)}


PROVIDERS.add(
    "openvino",
    ProviderSpec(
        name="openvino",
        ort_name="OpenVINOExecutionProvider",
        description="Intel OpenVINO through onnxruntime's plugin interface (qtool[openvino])",
        precision=(
            "OpenVINO's inference precision hint: f32 when pinned (--precision fp32), else "
            "OpenVINO's default for the CPU (bf16 where it has AMX or AVX512_BF16); ops "
            "OpenVINO does not take run on the CPU provider"
        ),
        precision_modes={
            "fp32": "f32: load_config CPU.INFERENCE_PRECISION_HINT=f32 (no bf16/f16)",
            "auto": "not pinned: OpenVINO's default inference precision for this CPU (bf16 "
            "on CPUs with AMX or AVX512_BF16, e.g. Sapphire Rapids, Zen 4)",
        },
        plugin=PluginLibrary(
            pip_name="onnxruntime-ep-openvino",
            module="onnxruntime_ep_openvino",
            library_path=lambda module: module.get_library_path(),
            registration_name="OpenVINOExecutionProvider",
            device_type="CPU",
            extra="openvino",
            no_device_note=(
                "it enumerates Intel devices only (onnxruntime PR #31981 would let it "
                "serve other CPUs)"
            ),
        ),
        configure=_openvino_config,
        threads_note="load_config CPU.INFERENCE_NUM_THREADS (OpenVINO's own threads)",
    ),
    aliases=("OpenVINOExecutionProvider", "ov"),
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

    def to_dict(self) -> dict:
        """The row as a report records it: the spec's facts, usable here or why not."""
        facts = self.spec.describe()
        facts.update(
            usable=self.usable,
            reason=self.reason,
            description=self.spec.description,
            precision_modes=dict(self.spec.precision_modes),
            out_of_scope=self.spec.out_of_scope is not None,
        )
        return facts


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
    """Usable specs for names or aliases, in order (default: cpu); bad input otherwise."""
    return [provider_spec(n, param=param) for n in (names or ["cpu"])]


def compared_specs(
    names: list[str] | tuple[str, ...] | None, *, param: str | None = "providers"
) -> list[ProviderSpec]:
    """Providers to compare, each in sessions of its own: usable, each named once."""
    specs = provider_specs(names, param=param)
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise QtoolError(f"execution provider {spec.name} is named twice", param=param)
        seen.add(spec.name)
    return specs


def session_specs(
    names: list[str] | tuple[str, ...] | None, *, param: str | None = "providers"
) -> list[ProviderSpec]:
    """The providers of one session in priority order. A plugin provider runs alone (its
    session falls back to the CPU provider by itself)."""
    specs = provider_specs(names, param=param)
    if len(specs) > 1 and any(s.plugin for s in specs):
        raise QtoolError(
            "a plugin execution provider must be the only provider of a session "
            f"(got {', '.join(s.name for s in specs)}); onnxruntime adds the CPU fallback itself",
            param=param,
        )
    return specs
