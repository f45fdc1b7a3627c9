"""Frozen TensorFlow graphs: a function of a model traced once with the model's weights
made constants, so that TensorFlow's graph optimiser folds whatever does not depend on
the inputs (a batch normalisation's scale and shift into the convolution before it).

The forward passes that take nearly all of an evaluation run this way: deletion /
insertion (camlab.scores.removal), Score-CAM's masked images and the perturbation methods
(cam_family.compiled_probabilities), Ablation-CAM's head (cam_family.compiled_head).
Folding moves the probabilities in their last bits only (about 1e-7 on small_vgg), the
same way on every call, so an image gets the same numbers in any batch. The weights
are compared with the frozen ones before each call: a model trained further is frozen
again, never run with stale weights.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2


class Frozen:
    """`function` traced for `specs` (tf.TensorSpec, None for any size), called with
    tensors of those specs; returns the function's one output."""

    def __init__(self, function: Callable[..., tf.Tensor], *specs: tf.TensorSpec):
        self._specs = specs
        self._traced = tf.function(function).get_concrete_function(*specs)
        self._variables = list(self._traced.variables)
        self._freeze()

    def _freeze(self) -> None:
        self._values = [variable.numpy() for variable in self._variables]
        try:
            self._constant = convert_variables_to_constants_v2(self._traced)
        except Exception:  # noqa: BLE001  a graph TensorFlow cannot freeze (lookup tables,
            self._constant = self._traced  # resources): run it traced, unfolded, as is

    def __call__(self, *args) -> tf.Tensor:
        if not all(np.array_equal(variable.numpy(), value)
                   for variable, value in zip(self._variables, self._values, strict=True)):
            self._freeze()
        # The flat call: a frozen function has no structured signature, so calling it as
        # f(*args) first fails to bind them, formats every input into the error message
        # (8 ms a call on 8 small images, measured) and only then falls back to this.
        inputs = [tf.convert_to_tensor(arg, spec.dtype) for arg, spec in
                  zip(args, self._specs, strict=True)]
        out = self._constant._call_flat(inputs, self._constant.captured_inputs)
        return out[0] if isinstance(out, (list, tuple)) else out
