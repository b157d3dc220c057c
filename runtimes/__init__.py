"""ONNX Runtime sessions, execution providers, latency timing and energy meters (measured,
estimated, and analytic from the graph ORT runs: executed.py, opcount.py, analytic_energy.py)."""

from qtool.runtimes.providers import PROVIDERS, ProviderSpec, list_providers, provider_specs
from qtool.runtimes.session import available_providers, make_session, resolve_providers

__all__ = [
    "PROVIDERS",
    "ProviderSpec",
    "available_providers",
    "list_providers",
    "make_session",
    "provider_specs",
    "resolve_providers",
]
