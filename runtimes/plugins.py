"""Plugin execution providers: a Python package ships a shared library that stock
onnxruntime loads with `register_execution_provider_library`; the plugin then lists the
devices it serves in `onnxruntime.get_ep_devices()`, and a session adds those devices with
`SessionOptions.add_provider_for_devices`.

Why a plugin cannot run here is derived from what it reports, never from a guess about the
machine: the package is missing (the install line), its library does not register (the
error), or it registers but lists no device of the wanted type (what it does list, and the
CPU onnxruntime sees, with the spec's note on which devices this plugin serves).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import onnxruntime as ort

_REGISTERED: set[str] = set()  # plugin libraries registered with onnxruntime in this process


@dataclass(frozen=True)
class PluginLibrary:
    """How a plugin provider is made available: a Python package that ships its library.

    `library_path(module)` returns the shared library's path from the imported package. The
    library is registered once per process under `registration_name` (which the plugin may
    use as its provider name), then the devices of `device_type` it lists are used.
    `no_device_note` says, for a user whose machine gets no device, which devices the
    plugin serves (a fact about the plugin, shown only when it lists none here).
    """

    pip_name: str  # what a user installs, e.g. onnxruntime-ep-openvino
    module: str  # its import name
    library_path: Callable[[ModuleType], str]
    registration_name: str
    device_type: str = "CPU"  # OrtHardwareDeviceType name of the devices to use
    no_device_note: str = ""
    extra: str | None = None  # the qtool extra that installs the package, if any

    def installed_version(self) -> str | None:
        try:
            return importlib.metadata.version(self.pip_name)
        except importlib.metadata.PackageNotFoundError:
            return None

    def register(self) -> None:
        """Register the library with onnxruntime (once per process); ImportError when the
        package is missing, onnxruntime's own error when the library is bad."""
        if self.registration_name in _REGISTERED:
            return
        module = importlib.import_module(self.module)
        ort.register_execution_provider_library(
            self.registration_name, str(self.library_path(module))
        )
        _REGISTERED.add(self.registration_name)

    def all_devices(self, ep_name: str) -> list:
        """Every device the plugin lists under `ep_name`, registering it first if needed."""
        self.register()
        return [d for d in ort.get_ep_devices() if d.ep_name == ep_name]

    def devices(self, ep_name: str) -> list:
        """The plugin's devices of `device_type` (the ones a session of qtool's uses)."""
        return [d for d in self.all_devices(ep_name) if d.device.type.name == self.device_type]

    def unusable_reason(self, ep_name: str) -> str | None:
        """Why this plugin cannot run here, from what it reports; None when it can."""
        try:
            listed = self.all_devices(ep_name)
        except ImportError:
            extra = f"pip install 'qtool[{self.extra}]' or " if self.extra else ""
            return f"needs its plugin package: {extra}pip install {self.pip_name}"
        except Exception as exc:  # onnxruntime raises its own types for a bad library
            return f"its plugin library failed to register: {first_line(exc)}"
        if any(d.device.type.name == self.device_type for d in listed):
            return None
        version = self.installed_version()
        package = f"{self.pip_name} {version}" if version else self.pip_name
        kinds = sorted({d.device.type.name for d in listed})
        lists = f"{', '.join(kinds)} devices only" if kinds else "no device at all"
        note = f": {self.no_device_note}" if self.no_device_note else ""
        vendor, vendor_id = host_cpu_vendor()
        return (
            f"installed ({package}) but offers no {self.device_type} device on this {vendor} "
            f"CPU (vendor id {vendor_id} as onnxruntime reports it; the plugin lists {lists})"
            f"{note}"
        )


def host_cpu_vendor() -> tuple[str, str]:
    """(vendor, vendor id) of the CPU as onnxruntime's device discovery reports them."""
    for d in ort.get_ep_devices():
        if d.device.type.name == "CPU" and d.device.vendor:
            return d.device.vendor, f"0x{d.device.vendor_id:04x}"
    return "unknown-vendor", "unknown"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
