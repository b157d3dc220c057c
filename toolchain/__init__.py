"""qtool: take a trained model to a verified INT8 ONNX model for CPU servers, and test it."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
