"""Exporting a model for other runtimes: ONNX (`export_onnx`), in the layout ONNX Runtime, optimum and sentence-transformers read."""
from bertkit.export.onnx import export_onnx

__all__ = ["export_onnx"]
