"""PyTorch interop: ``to_torch(model)`` and ``from_torch(module)``, the same weights both ways.

::

    module = fastnn.interop.to_torch(model)         # torch.nn.Sequential of Linear + activations
    model = fastnn.interop.from_torch(module)       # fastnn.Sequential of Dense layers

The code lives in :mod:`fastnn.export.torch`; this module only names it. Needs PyTorch, which
fastnn itself never imports.
"""

from .export.torch import TORCH_ACTIVATIONS, from_torch, to_torch

__all__ = ["TORCH_ACTIVATIONS", "from_torch", "to_torch"]
