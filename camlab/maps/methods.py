"""The map methods as the scripts choose them: names, layers, and the figure's top-k maps.

Every method is a `method_spec.Method` of camlab.maps.cam_family (maps of a layer's
activations: CAM, Grad-CAM, Grad-CAM++, Score-CAM, LayerCAM, Eigen-CAM, HiResCAM, ...), of
camlab.maps.attribution (gradient maps of the input pixels: saliency, SmoothGrad, ...) or of
camlab.maps.perturbation (occlusion, RISE), all of one shape: a
`classifier.Classifier`, its default layer's maps `features` (batch, h, w, channels) from
`Classifier.features`, and `classes` (batch, k) -> maps (batch, h, w, k) float32, at the
input's resolution (batch, H, W, k) for a map of the input pixels. With a `layer` (LAYER)
a method explains that layer's activations instead, from the `images`.
"""

from __future__ import annotations

import tensorflow as tf

import cam_utils
from camlab.core import randomness, tables
from camlab.errors import CamError, check_choice
from camlab.maps import attribution, cam_family, perturbation
from camlab.maps.method_spec import DEFAULT_OPTIONS, SCORECAM_BATCH, Method, Options
from camlab.networks.classifier import Classifier

__all__ = ["DEFAULT_OPTIONS", "METHODS", "REGISTRY", "SCORECAM_BATCH", "Method", "Options",
           "check_layer", "check_options", "layer_name", "maps_for_classes", "parse_methods",
           "passes_table", "top_k_maps"]

REGISTRY: dict[str, Method] = {**cam_family.METHODS, **attribution.METHODS,
                              **perturbation.METHODS}
METHODS = tuple(REGISTRY)  # the names METHOD takes, in the order "all" runs them
TITLES = {name: method.title for name, method in REGISTRY.items()}


FAMILIES = {False: "CAM family: a layer's activations A, weighted", True: "input pixels"}


def method_table() -> list[str]:
    """The README's method table, rendered by `make results`: a row per group of methods
    (Method.group; a method of no group has its own), groups and methods in the registry's
    order, each method's summary followed by its paper."""
    groups: dict[tuple[bool, str], list[str]] = {}
    for name, method in REGISTRY.items():
        groups.setdefault((method.on_input, method.group or name), []).append(name)
    rows, families = [], set()
    for (on_input, _), names in groups.items():
        members = [REGISTRY[name] for name in names]
        what = ", ".join(f"{method.summary} ({method.paper})" for method in members)
        family = "" if on_input in families else FAMILIES[on_input]
        families.add(on_input)
        rows.append((family, ", ".join(f"`{name}`" for name in names),
                     f"{members[0].group}: {what}" if members[0].group else what))
    return tables.table(("family", "`METHOD`", "what the map is"), rows)


def passes_table() -> list[str]:
    """docs/benchmarks.md's "passes per image" table, rendered by `make results`: a row per
    method from its Method.passes, what each map costs beside the forward pass that gives
    the features and the classes, at the defaults."""
    rows = [(f"`{name}`", method.title, "the pixels" if method.on_input else "a layer",
             method.passes) for name, method in REGISTRY.items()]
    return tables.table(("method", "title", "a map of", "passes per image"), rows)


def parse_methods(text: str) -> tuple[str, ...]:
    """METHOD as the scripts take it: one name, names separated by commas, or "all".

    Returns the names in the order given, each once; any name not in METHODS is one
    CamError naming all of them.
    """
    if text.strip() == "all":
        return METHODS
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",")))
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise CamError(f"METHOD={text!r}: {', '.join(repr(name) for name in unknown)} "
                       f"{'is' if len(unknown) == 1 else 'are'} not a method; choose one or "
                       f"more of {', '.join(METHODS)} separated by commas, or \"all\"")
    return names


def check_layer(method: str, model: Classifier, layer: str) -> str:
    """The layer whose activations METHOD explains: LAYER's full name, or "" for the
    model's default layer (the last 4-D output before its scores).

    CAM needs a GAP -> Dense head and is exact only on GAP's input, so any other model or
    layer is refused for it; so is any method for a model its Method.refusal names a
    reason for (guided backpropagation without a ReLU); a map of the input pixels
    (saliency) takes no layer; a name the model lacks gets the list of valid ones; a
    method that reruns the layers after the explained one alone (Ablation-CAM) refuses a
    layer a skip connection bypasses.
    """
    check_choice("METHOD", method, METHODS)
    if method == "cam" and model.cam_kernel is None:
        raise CamError(f"METHOD=\"cam\" does not apply to this model: {model.cam_refusal}")
    refusal = REGISTRY[method].refusal and REGISTRY[method].refusal(model)
    if refusal:
        raise CamError(f"METHOD=\"{method}\" does not apply to this model: {refusal}")
    explained = model.layer(layer) if layer else model.default_layer
    if REGISTRY[method].needs_head:
        cam_family.require_head(model, explained, method)
    if explained == model.default_layer:
        return ""
    if method == "cam":
        raise CamError(f"METHOD=\"cam\" works only on the feature maps that feed GAP (CAM "
                       f"= F @ W is the class score only there), not on LAYER={layer!r}; use "
                       "METHOD=\"gradcam\" for other layers, or LAYER=\"\"")
    if REGISTRY[method].on_input:
        raise CamError(f"METHOD=\"{method}\" is a map of the input pixels and has no layer, "
                       f"not LAYER={layer!r}; use LAYER=\"\" with it")
    return explained


def check_options(names: tuple[str, ...], options: Options) -> Options:
    """`options`, or one CamError for the first setting out of its range (Options.check) or
    for what they ask of one of the methods `names` that it cannot do: AUG_SMOOTH and
    EIGEN_SMOOTH exist for the CAM family only (Method.smoothing). Where the scripts, the
    library and maps_for_classes check the methods' settings."""
    options.check()
    asked = [name.upper() for name in ("aug_smooth", "eigen_smooth") if getattr(options, name)]
    method = next((name for name in names if not REGISTRY[name].smoothing), None)
    if asked and method:
        family = ",".join(name for name, spec in REGISTRY.items() if spec.smoothing)
        raise CamError(f"{' and '.join(f'{name}=True' for name in asked)}: smoothing applies "
                       f"to the CAM family's maps only, not to METHOD=\"{method}\"; choose "
                       f"METHOD among {family}, or set {' and '.join(asked)} False")
    return options


def layer_name(model: Classifier, layer: str) -> str:
    """The name of the layer explained: `layer`, or the model's default one."""
    return layer or model.default_layer


def maps_for_classes(method: str, model: Classifier, features: tf.Tensor,
                     classes: tf.Tensor, images: tf.Tensor | None = None,
                     layer: str = "", options: Options = DEFAULT_OPTIONS,
                     ids: tf.Tensor | None = None) -> tf.Tensor:
    """Maps (batch, h, w, k) float32 of `classes` (batch, k) by METHOD; a map of the input
    pixels (Method.on_input) is at the images' resolution (batch, H, W, k).

    `layer` goes through check_layer; other than "" it needs the `images`, and so do the
    methods that need them on any layer (Method.needs_images). `options` holds the
    methods' settings (Options); `ids` (batch,) int are the images' indices in their
    split, which key the random numbers of a method that draws any (default 0, 1, ...:
    see randomness.image_ids).
    """
    layer = check_layer(method, model, layer)
    check_options((method,), options)
    spec = REGISTRY[method]
    if images is None and (layer or spec.needs_images):
        raise ValueError(f"METHOD={method!r}" + (f" on layer {layer!r}" if layer else "")
                         + " needs the images, not only the features: pass images=")
    ids = randomness.image_ids(classes.shape[0], ids)
    return spec.maps(model, features, classes, images, layer, options, ids)


def top_k_maps(method: str, model: Classifier, features: tf.Tensor, probs: tf.Tensor,
               k: int, threshold: float, size: tuple[int, int],
               images: tf.Tensor | None = None, layer: str = "",
               options: Options = DEFAULT_OPTIONS, ids: tf.Tensor | None = None
               ) -> dict[str, tf.Tensor]:
    """The seed's figure data: each image's k most probable classes and their display maps.

    `features` (batch, h, w, channels) and `probs` (batch, classes) come from one forward
    pass of `model.features`; `images`, `layer`, `options` and `ids` as in
    maps_for_classes. Returns {"maps": (batch, k, H, W) float32 as
    `cam_utils.display_maps` draws them, "low_res": (batch, h, w, k) before that,
    "probs": (batch, k), "classes": (batch, k)}. CAM, the default, is one compiled
    computation from the probabilities and features to the maps (cam_utils.top_k_cam_maps).
    """
    smoothed = options.aug_smooth or options.eigen_smooth
    if method == "cam" and not smoothed and not check_layer(method, model, layer):  # common
        return cam_utils.top_k_cam_maps(features, model.cam_kernel, probs, k, threshold, size)
    top_probs, top_classes = cam_utils.top_k_classes(probs, k)
    maps = maps_for_classes(method, model, features, top_classes, images, layer, options, ids)
    return {"maps": cam_utils.display_maps(maps, threshold, size), "low_res": maps,
            "probs": top_probs, "classes": top_classes}
