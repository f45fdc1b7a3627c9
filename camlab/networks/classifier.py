"""Any Keras image classifier, seen the way the map methods need it.

`explain(model)` replays the model on RGB images in [0, 255] as one flat graph (nested
models opened by `models.flat_call`, so gradients reach their layers: no "Graph
disconnected") and finds, on the path to the explained output:
- the class scores the gradients are taken of: the pre-softmax (or pre-sigmoid) logits
  where the graph exposes them, else the log of the probabilities;
- every layer with a 4-D output (batch, h, w, channels), by name; the last one is the
  default layer of the maps;
- whether CAM applies: only when the head is exactly GlobalAveragePooling2D -> Dense on
  that layer (Dropout between them is allowed: it is the identity at inference).

Layers inside a nested model are named by their path, "vgg16/block5_conv3"; a name that
only one layer has may be given alone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from camlab.errors import CamError
from camlab.networks import models

# PREPROCESS: what the model expects of its input, applied to RGB [0, 255] before it
# (models.preprocessing).
PREPROCESSING = ("none", "caffe", "tf", "torch", "unit")
SOFTMAX_NAMES = {"softmax", "log_softmax"}
_NOT_CALLED = ("", None, [], None)  # what `calls` holds for a tensor no layer made


@dataclass(eq=False)  # hashed by identity, so methods can cache models built from it
class Classifier:
    """A classifier ready for map methods.

    `model`: RGB images (batch, S, S, 3) in [0, 255] -> class scores (batch, classes)
    float; `probability`: "softmax" or "sigmoid", how scores become probabilities;
    `score`: "logit" or "log-probability"; `layers`: name -> 4-D output tensor of
    `model`'s graph on the path to the scores, in graph order; `cam_kernel`: the Dense
    kernel (channels, classes) when CAM applies, else None and `cam_refusal` says why.
    """

    model: keras.Model
    layers: dict[str, Any]
    probability: str
    score: str
    cam_kernel: Any
    cam_refusal: str
    source: keras.Model
    build: dict[str, Any]
    output_name: str = ""

    @property
    def default_layer(self) -> str:
        return next(reversed(self.layers))

    @property
    def image_size(self) -> int:
        """The input's side; the scripts feed square images (see subject.open_subject)."""
        return self.model.input.shape[1]

    @property
    def num_classes(self) -> int:
        return self.model.output.shape[-1]

    def probabilities(self, scores: tf.Tensor) -> tf.Tensor:
        """(batch, classes) float32 probabilities from the scores."""
        scores = tf.cast(scores, tf.float32)
        return tf.sigmoid(scores) if self.probability == "sigmoid" else tf.nn.softmax(scores)

    def __call__(self, images, training: bool = False) -> tf.Tensor:
        """The probabilities (batch, classes) float32 of RGB images, as a Keras
        classifier's call gives them."""
        return self.probabilities(self.model(images, training=training))

    def features(self, images) -> tuple[tf.Tensor, tf.Tensor]:
        """One forward pass: the default layer's maps (batch, h, w, c) and the
        probabilities (batch, classes)."""
        maps, scores = self.layer_model(self.default_layer)(images, training=False)
        return maps, self.probabilities(scores)

    @functools.lru_cache(maxsize=8)  # noqa: B019 (a handful of classifiers per process)
    def layer_model(self, layer: str) -> keras.Model:
        """images -> (`layer`'s maps, class scores)."""
        return keras.Model(self.model.input, [self.layers[layer], self.model.output])

    @functools.lru_cache(maxsize=8)  # noqa: B019
    def trunk(self, layer: str) -> keras.Model:
        """images -> `layer`'s maps."""
        return keras.Model(self.model.input, self.layers[layer])

    @functools.lru_cache(maxsize=8)  # noqa: B019
    def head(self, layer: str) -> keras.Model | None:
        """`layer`'s maps -> class scores, when the scores depend on the images only through
        that layer; None when another path bypasses it (a skip connection)."""
        try:
            return keras.Model(self.layers[layer], self.model.output)
        except ValueError:
            return None

    def layer(self, name: str) -> str:
        """The full name of the layer LAYER names: its path, or a name only one layer has;
        any other name is one CamError listing the candidates."""
        if name in self.layers:
            return name
        matches = [path for path in self.layers if path.rsplit("/", 1)[-1] == name]
        if len(matches) == 1:
            return matches[0]
        listed = ", ".join(self.layers)
        if matches:
            raise CamError(f"LAYER={name!r} names {len(matches)} layers; give its path, one "
                           f"of {', '.join(matches)}")
        raise CamError(f"LAYER={name!r} is not a layer of this model with a 4-D output; "
                       f"choose one of {listed}")

    def randomised(self, seed: int) -> Classifier:
        """The same network with freshly initialised, seeded weights (the sanity check)."""
        keras.utils.set_random_seed(seed)
        return explain(keras.models.clone_model(self.source), **self.build)


def _activation_name(layer) -> str:
    activation = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    return getattr(activation, "__name__", "") if activation is not None else ""


def output_names(model: keras.Model) -> list[str]:
    """The names of the model's outputs, as Keras gives them (the layers that make them)."""
    return list(getattr(model, "output_names", None) or
                [tensor.name for tensor in model.outputs])


def chosen_output(model: keras.Model, output: str) -> int:
    """The index of the output OUTPUT names ("" when the model has one), by name or number."""
    names = output_names(model)
    if len(model.outputs) == 1 and not output:
        return 0
    if not output:
        raise CamError(f"the model has {len(names)} outputs; choose the one to explain with "
                       f"OUTPUT, one of {', '.join(names)} (or its number from 0)")
    if output in names:
        return names.index(output)
    if output.isdigit() and int(output) < len(names):
        return int(output)
    raise CamError(f"OUTPUT={output!r} is not an output of the model; choose one of "
                   f"{', '.join(names)} (or its number from 0 to {len(names) - 1})")


def _input_shape(model: keras.Model, image_size: int) -> tuple[int, int]:
    """(height, width) of the model's input; `image_size` for a side it leaves open."""
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise CamError("the model must take one input of images (batch, height, width, "
                       f"channels), not {[tuple(t.shape) for t in model.inputs]}")
    _, height, width, channels = model.inputs[0].shape
    if channels != 3:
        raise CamError(f"the model takes {channels}-channel images; this project feeds RGB "
                       "(3 channels)")
    return height or image_size, width or image_size


def explain(model: keras.Model, image_size: int = 224, preprocess: str = "none",
            output: str = "") -> Classifier:
    """A Classifier of `model`'s `output` (see chosen_output) on RGB images of the model's
    own input size (`image_size` for a side it leaves open), after `preprocess`.

    The output layer's softmax or sigmoid activation is switched to linear on `model`
    itself (as tf-keras-vis' ReplaceToLinear does), so pass a model loaded for this.
    """
    build = {"image_size": image_size, "preprocess": preprocess, "output": output}
    index = chosen_output(model, output)
    inputs = keras.Input((*_input_shape(model, image_size), 3), name="image")
    # id(output tensor) -> (layer name, layer, input tensors, the tensor), in call order
    calls: dict[int, tuple[str, Any, list, Any]] = {}

    def record(name, operation, args, outputs):
        for tensor in keras.tree.flatten(outputs):
            calls[id(tensor)] = (name, operation, keras.tree.flatten(args), tensor)

    outputs = keras.tree.flatten(models.flat_call(
        model, models.preprocessing(preprocess, inputs), record))
    probs = outputs[index]
    if len(probs.shape) != 2:
        raise CamError(f"the model's output has shape {tuple(probs.shape)}; a classifier's "
                       "is (batch, classes): choose another OUTPUT, or a classifier")
    scores, probability, kind, dense = _scores(probs, calls)
    layers = _map_layers(scores if kind == "logit" else probs, calls)
    kernel, refusal = _cam_head(dense, layers[next(reversed(layers))], calls,
                                one_unit=probs.shape[-1] == 1)
    if probs.shape[-1] == 1 and probability == "sigmoid":  # one unit z: classes -z and z
        scores = keras.layers.Concatenate(name="both_classes")([-scores, scores])
    return Classifier(keras.Model(inputs, scores, name=f"{model.name}_scores"), layers,
                      probability, kind, kernel, refusal, model, build,
                      output_names(model)[index])


def _scores(probs, calls) -> tuple[Any, str, str, Any]:
    """(score tensor, probability, score kind, the Dense layer that makes the logits or
    None) for the output tensor `probs`. An output Dense/Conv with a softmax or sigmoid
    activation is switched to linear; a Softmax or Activation layer is stepped over."""
    _, layer, inputs, _ = calls.get(id(probs), _NOT_CALLED)
    activation = _activation_name(layer)
    if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)) and activation in (
            *SOFTMAX_NAMES, "sigmoid"):
        logits = inputs[0]
        producer = calls.get(id(logits), _NOT_CALLED)[1]
        dense = producer if isinstance(producer, keras.layers.Dense) else None
        return logits, "sigmoid" if activation == "sigmoid" else "softmax", "logit", dense
    if hasattr(layer, "activation") and activation in ("softmax", "sigmoid", "linear"):
        if activation != "linear":
            layer.activation = keras.activations.linear
        dense = layer if isinstance(layer, keras.layers.Dense) else None
        sigmoid = activation == "sigmoid" or (activation == "linear" and probs.shape[-1] == 1)
        return probs, "sigmoid" if sigmoid else "softmax", "logit", dense
    # Anything else (a Lambda, a custom layer): take the output as probabilities.
    return keras.ops.log(keras.ops.maximum(probs, 1e-30)), "softmax", "log-probability", None


def _map_layers(scores, calls) -> dict[str, Any]:
    """Name -> tensor of every layer's 4-D output the scores depend on, in the order
    computed; one CamError when no convolution is among the layers on that path."""
    needed, stack = set(), [scores]
    while stack:
        tensor = stack.pop()
        if id(tensor) not in needed and id(tensor) in calls:
            needed.add(id(tensor))
            stack.extend(calls[id(tensor)][2])
    on_path = [call for key, call in calls.items() if key in needed]  # in replay order
    if not any("Conv" in type(layer).__name__ for _, layer, _, _ in on_path):
        raise CamError("the model has no convolutional layer before its output: class "
                       "activation maps need a CNN, whose layers keep (batch, h, w, channels) "
                       "maps")
    return {name: tensor for name, layer, _, tensor in on_path
            if len(tensor.shape) == 4 and isinstance(layer, keras.layers.Layer)}


def _cam_head(dense, features, calls, one_unit: bool) -> tuple[Any, str]:
    """(CAM kernel, "") when `dense` reads GlobalAveragePooling2D of `features` (Dropout
    between allowed), else (None, the reason)."""
    pooling = None
    if dense is not None:
        tensor = next(inputs[0] for _, layer, inputs, _ in calls.values() if layer is dense)
        while isinstance(calls.get(id(tensor), _NOT_CALLED)[1], keras.layers.Dropout):
            tensor = calls[id(tensor)][2][0]
        _, pooling, inputs, _ = calls.get(id(tensor), _NOT_CALLED)
        if (isinstance(pooling, keras.layers.GlobalAveragePooling2D)
                and not pooling.keepdims and inputs and inputs[0] is features):
            kernel = dense.kernel
            return (tf.concat([-kernel, kernel], axis=1) if one_unit else kernel), ""
    found = ("its scores come from no Dense layer" if dense is None else
             f"its Dense reads {type(pooling).__name__ if pooling else 'the input'}")
    return None, ("CAM needs the head to be exactly GlobalAveragePooling2D -> Dense on the "
                  f"last feature maps; {found}: use METHOD=\"gradcam\" (or another "
                  "gradient method)")
