"""The layer protocol: what every layer kind tells the model, the workspace and the backends.

A layer

- declares its parameters (``param_names``, e.g. ``("W", "b")``), which the optimizer updates
  in that order;
- builds from the shape of one sample (``(features,)`` for a dense input, ``(C, H, W)`` for an
  image) with :meth:`Layer.build`, which allocates its parameters and returns its output shape;
- runs one batch forward and backward through its backend's kernels (:meth:`forward_into`,
  :meth:`backward_into`) on the buffers of a :class:`fastnn.backends.workspace.LayerSlot`, and
  asks for any extra per-batch buffer it needs (:meth:`buffer_shapes`);
- may run together with the layer after it as one backend call (:meth:`fuses_with`: a
  convolution and its max pooling), with the same results;
- round-trips through :meth:`config` and the registry (:func:`layer_from_config`), which is how
  ``save``/``load`` and ``summary`` see it.

``Sequential``, ``summary``, ``save``/``load``, the workspace, the per-batch loop and the
diagnostics use only this protocol. A backend's fused ``train_epoch`` runs the layer kinds in its
``FUSED_LAYERS``; a model with any other kind trains on the per-batch path.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar, TypeVar

import numpy as np

from .. import _codes as C
from ..backends import resolve_backend
from ..backends.workspace import LayerSlot, make_slots

Shape = tuple[int, ...]
LAYERS: dict[str, type[Layer]] = {}
L = TypeVar("L", bound="type[Layer]")


def register_layer(cls: L) -> L:
    """Class decorator: make a layer kind known to ``load`` and ``layer_from_config``."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} needs a `kind` name to be registered")
    LAYERS[cls.kind] = cls
    return cls


def layer_from_config(kind: str, config: dict[str, Any]) -> Layer:
    """A new layer of the registered ``kind`` built from its :meth:`Layer.config`."""
    if kind not in LAYERS:
        raise ValueError(f"unknown layer kind {kind!r}; known kinds: {', '.join(sorted(LAYERS))}")
    return LAYERS[kind].from_config(config)


class Layer:
    """Base class of every layer (the protocol; see the module docstring).

    Attributes
    ----------
    kind : str
        Registry name (``"dense"``, ...).
    param_names : tuple of str
        Names of the parameter attributes, in update order.
    input_shape, output_shape : tuple of int or None
        Shape of one sample in and out; None before :meth:`build`.
    """

    kind: ClassVar[str] = ""
    param_names: ClassVar[tuple[str, ...]] = ()
    #: Activation code the kernels apply (identity for layers without an activation).
    act_code: int = C.IDENTITY
    #: Activation parameter handed to the kernels (leaky-ReLU slope, ELU alpha).
    act_alpha: float = 0.0

    def __init__(self) -> None:
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self._cache: tuple[np.ndarray, LayerSlot] | None = None

    # -- building ----------------------------------------------------------------------------
    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Output shape of one sample for ``input_shape``; a ValueError naming the layer and
        the shapes when this layer cannot take that input."""
        raise NotImplementedError

    def init_params(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        """Allocate and draw the parameters (after the shapes are known)."""

    def build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> Shape:
        """Check ``input_shape`` (one sample), allocate the parameters, return the output shape."""
        input_shape = tuple(int(s) for s in input_shape)
        self.output_shape = self.compute_output_shape(input_shape)
        self.input_shape = input_shape
        self.init_params(rng, np.dtype(dtype))
        return self.output_shape

    @property
    def built(self) -> bool:
        return self.output_shape is not None

    def parameters(self) -> list[np.ndarray]:
        """The parameter arrays themselves (not copies), in ``param_names`` order."""
        if self.param_names and not self.built:
            raise RuntimeError(f"{self!r} is not built: put it in a Sequential first")
        return [getattr(self, name) for name in self.param_names]

    def gradients(self) -> list[np.ndarray | None]:
        """Gradients of the last :meth:`backward` (``d`` + each parameter name)."""
        return [getattr(self, "d" + name, None) for name in self.param_names]

    def n_params(self) -> int:
        return sum(int(p.size) for p in self.parameters())

    def buffer_shapes(self, rows: int, act: int) -> dict[str, Any]:
        """Extra per-batch buffers for ``rows`` samples when run with activation ``act``: name
        to a shape (a buffer of the model dtype) or to ``(shape, dtype)``."""
        return {}

    # -- one batch through a backend -------------------------------------------------------
    def forward_into(self, B: ModuleType, x: np.ndarray, slot: LayerSlot, n: int) -> None:
        """Write the output of the first ``n`` rows of ``x`` into ``slot.output[:n]``."""
        raise NotImplementedError

    def backward_into(
        self, B: ModuleType, x: np.ndarray, slot: LayerSlot, n: int, grad_x: np.ndarray | None
    ) -> None:
        """From dL/d(output) in ``slot.delta[:n]`` write ``slot.grads`` and dL/dx into
        ``grad_x`` (n, *input_shape), or skip the input gradient when it is None."""
        raise NotImplementedError

    # -- optional: this layer and the next one as one call ---------------------------------
    def fuses_with(self, following: Layer) -> bool:
        """True when this layer and ``following`` run as one backend call (the per-batch loop
        then calls :meth:`forward_fused_into` and :meth:`backward_fused_into` instead of the
        two layers' own methods; the results are the same). Default: never."""
        return False

    def forward_fused_into(
        self, B: ModuleType, x: np.ndarray, slot: LayerSlot, following: Layer,
        following_slot: LayerSlot, n: int,
    ) -> None:  # fmt: skip
        """Write the output of ``following`` applied to this layer's output into
        ``following_slot.output[:n]``; ``slot.output`` may be left unwritten."""
        raise NotImplementedError

    def backward_fused_into(
        self, B: ModuleType, x: np.ndarray, slot: LayerSlot, following: Layer,
        following_slot: LayerSlot, n: int, grad_x: np.ndarray | None,
    ) -> None:  # fmt: skip
        """From dL/d(following's output) in ``following_slot.delta[:n]`` write ``slot.grads``
        and dL/dx into ``grad_x`` (or skip it when None)."""
        raise NotImplementedError

    # -- the teaching path: one call, buffers allocated per call ---------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run the layer on ``x`` (n, *input_shape) and keep what :meth:`backward` needs.

        Returns
        -------
        ndarray, shape (n, *output_shape)
        """
        if not self.built:
            raise RuntimeError(f"{self!r} is not built: put it in a Sequential first")
        dtype = self.parameters()[0].dtype if self.param_names else np.asarray(x).dtype
        x = np.ascontiguousarray(x, dtype=dtype)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"{self!r} expects inputs of shape (n, {_dims(self.input_shape)}), "
                             f"got {x.shape}")  # fmt: skip
        (slot,) = make_slots([self], [self.act_code], x.shape[0], dtype)
        self.forward_into(resolve_backend(), x, slot, x.shape[0])
        self._cache = (x, slot)
        return slot.output

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate dL/d(output) (n, *output_shape): set the parameter gradients
        (``dW``, ``db``, ...) and return dL/d(input) (n, *input_shape), or None."""
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        x, slot = self._cache
        grad = np.asarray(grad)
        if grad.shape != slot.output.shape:
            raise ValueError(f"grad has shape {grad.shape}, expected {slot.output.shape}")
        slot.delta[...] = grad
        grad_x = np.empty_like(x) if need_input_grad else None
        self.backward_into(resolve_backend(), x, slot, x.shape[0], grad_x)
        for name, g in zip(self.param_names, slot.grads, strict=True):
            setattr(self, "d" + name, g)
        return grad_x

    # -- configuration -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-able), for ``save``/``load`` and ``summary``."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    def describe(self) -> str:
        """A short name for ``summary`` and messages, e.g. ``Dense(relu)``."""
        return type(self).__name__


def _dims(shape: Shape | None) -> str:
    return ", ".join(str(s) for s in shape or ())


__all__ = ["LAYERS", "Layer", "Shape", "layer_from_config", "register_layer"]
