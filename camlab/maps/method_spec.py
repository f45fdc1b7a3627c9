"""What a map method is (Method) and the settings it takes (Options).

Every method is one function of the same shape:

    maps(model, features, classes, images=None, layer="", options=DEFAULT_OPTIONS,
         ids=None) -> (batch, h, w, k) float32

`model` a classifier.Classifier; `features` (batch, h, w, channels) its default layer's
maps from `Classifier.features`; `classes` (batch, k) int; `images` (batch, S, S, 3) RGB in
[0, 255]; `layer` "" (the default layer) or a full layer name from methods.check_layer;
`ids` (batch,) int64 the images' indices in their split (randomness.image_ids). A method
of the input pixels returns (batch, S, S, k). camlab.maps.methods gathers the methods of
camlab.maps.cam_family and camlab.maps.attribution and dispatches to them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from camlab.errors import CamError, check_choice

SCORECAM_BATCH = 64  # masked images per forward pass of Score-CAM: its memory cap
ABLATION_BATCH = 64  # ablated copies of the layer per pass of Ablation-CAM's head
# The input-resolution methods' settings; their scripts' lines say the same.
NOISE_SAMPLES = 50  # SmoothGrad: noisy copies per image (Smilkov et al. 2017)
NOISE_LEVEL = 0.15  # SmoothGrad: noise std as a fraction of the image's max - min
IG_STEPS = 50  # Integrated Gradients: Riemann steps from the baseline to the image
IG_BASELINES = ("black", "blur")  # IG_BASELINE's choices; blur: image_io.blurred, 0.1 side
OCCLUSION_PATCH = 0.125  # occlusion: the grey square's side as a fraction of the image's
OCCLUSION_STRIDE = 0.0625  # occlusion: the square's step, a fraction of the side
RISE_MASKS = 2000  # RISE: random masks, shared by all images (Petsiuk et al. 2018)
ATTRIBUTION_BATCH = 32  # inputs of 224 x 224 pixels per model pass of the input methods
ATTRIBUTION_PIXELS = 224 * 224  # the side ATTRIBUTION_BATCH counts in: smaller go more a pass


@dataclasses.dataclass(frozen=True)
class Options:
    """What a method needs beyond the model, the layer and the classes: every field is the
    lower-case name of a script setting (SCORECAM_BATCH -> scorecam_batch), with the
    setting's default. `seed` seeds the methods that draw random numbers; they draw per
    image, keyed by (seed, the image's index in its split: `ids`), so a batch, a shard or
    the whole split give an image the same map.

    `scorecam_max_channels` N > 0 keeps each image's N channels of highest variance in
    Score-CAM (Faster Score-CAM); 0 keeps them all. `aug_smooth` and `eigen_smooth` apply
    to the CAM family (camlab.maps.cam_family): the mean map over 6 flipped and scaled views
    (6 times every pass, plus the views' forward pass), and the first principal component
    of the weighted activations instead of their sum (an SVD per image and class).
    """

    scorecam_batch: int = SCORECAM_BATCH
    scorecam_max_channels: int = 0
    ablation_batch: int = ABLATION_BATCH
    aug_smooth: bool = False
    eigen_smooth: bool = False
    seed: int = 0
    noise_samples: int = NOISE_SAMPLES
    noise_level: float = NOISE_LEVEL
    ig_steps: int = IG_STEPS
    ig_baseline: str = IG_BASELINES[0]
    occlusion_patch: float = OCCLUSION_PATCH
    occlusion_stride: float = OCCLUSION_STRIDE
    rise_masks: int = RISE_MASKS
    attribution_batch: int = ATTRIBUTION_BATCH

    def inputs_per_pass(self, height: int, width: int) -> int:
        """How many inputs of height x width an input-resolution method runs through the
        model at once: `attribution_batch` (per_pass)."""
        return per_pass("attribution_batch", self.attribution_batch, height, width)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Options:
        """The options a script's resolved settings give; settings it lacks keep defaults."""
        return cls(**{field.name: config[field.name.upper()]
                      for field in dataclasses.fields(cls) if field.name.upper() in config})

    def check(self) -> Options:
        """These options, or one CamError naming the first setting out of its range: the one
        place the methods' settings are checked (methods.check_options)."""
        for name in ("scorecam_batch", "ablation_batch", "noise_samples", "ig_steps",
                     "rise_masks", "attribution_batch"):
            if getattr(self, name) < 1:
                raise CamError(f"{name.upper()}={getattr(self, name)} must be at least 1")
        if self.scorecam_max_channels < 0:
            raise CamError(f"SCORECAM_MAX_CHANNELS={self.scorecam_max_channels} must be 0 "
                           "(all channels) or more")
        if not self.noise_level >= 0:
            raise CamError(f"NOISE_LEVEL={self.noise_level} must be 0 or more (a fraction "
                           "of the image's range)")
        for name in ("occlusion_patch", "occlusion_stride"):
            if not 0 < getattr(self, name) <= 1:
                raise CamError(f"{name.upper()}={getattr(self, name)} must be above 0 and at "
                               "most 1 (a fraction of the image's side)")
        check_choice("IG_BASELINE", self.ig_baseline, IG_BASELINES)
        return self


def per_pass(name: str, count: int, height: int, width: int) -> int:
    """A memory cap `count` of 224 x 224 images a pass, for images of height x width:
    proportionally more for smaller ones (a pass's memory grows with its pixels), never
    fewer than `count`. ValueError naming `name` for a count below 1."""
    if count < 1:
        raise ValueError(f"{name} must be a positive number of inputs, not {count!r}")
    return count * max(1, ATTRIBUTION_PIXELS // (height * width))


DEFAULT_OPTIONS = Options()


@dataclasses.dataclass(frozen=True)
class Method:
    """A map method as the scripts, the leaderboard and the bench see it."""

    title: str  # how figures and tables name it: "Grad-CAM"
    maps: Callable[..., Any]  # the function of the shape in this module's docstring
    paper: str = ""  # where it is defined: a Markdown link to the paper, or the library's
    summary: str = ""  # what the map is, in a few words, after its group's words
    group: str = ""  # the README's row it shares with methods of the same kind: "" alone
    on_input: bool = False  # a map of the input pixels, at their resolution: takes no LAYER
    needs_images: bool = False  # needs the images even on the default layer
    class_specific: bool = True  # False: the same map for every class (Eigen-CAM)
    passes: str = ""  # forward and backward passes per image, for docs/benchmarks.md
    smoothing: bool = False  # takes AUG_SMOOTH and EIGEN_SMOOTH (the CAM family)
    needs_head: bool = False  # runs the layers after LAYER alone: no skip may bypass it
    refusal: Callable[[Any], str] | None = None  # Classifier -> why the method does not
    # apply to it ("" when it does); methods.check_layer raises it as one CamError
