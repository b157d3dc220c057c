"""Framework -> ONNX exporters with parity checks (PyTorch: `qtool.exporters.pytorch`).

Torch is imported inside the functions, so importing this package costs nothing on servers
without torch.
"""
