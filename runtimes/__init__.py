"""ONNX Runtime sessions, execution providers, latency timing and energy meters."""

from qtool.runtimes.session import available_providers, make_session, resolve_providers

__all__ = ["available_providers", "make_session", "resolve_providers"]
