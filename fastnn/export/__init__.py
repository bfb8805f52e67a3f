"""Take a trained model anywhere: ONNX files and PyTorch modules with fastnn's weights.

- :func:`to_onnx` writes a ``Sequential`` (or a fitted ``fastnn.sklearn`` estimator) as an ONNX
  file that onnxruntime (or any ONNX runtime) runs; needs ``pip install 'fastnn[onnx]'``.
- :func:`fastnn.interop.to_torch` / :func:`fastnn.interop.from_torch` turn a model into a
  ``torch.nn.Sequential`` and back (module :mod:`fastnn.export.torch`); needs PyTorch.

This package uses the public API of fastnn and is never imported by it: ``import fastnn`` does
not import onnx or torch. See ``docs/export.md``.
"""

from .onnx import OUTPUT_KINDS, to_onnx

__all__ = ["OUTPUT_KINDS", "to_onnx"]
