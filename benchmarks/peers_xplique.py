"""xplique 2.0.2's map methods timed on the bench's model, for bench_cam.py's part `xplique`.

Runs in xplique's own virtual environment (it pins TensorFlow <= 2.20 and tensorflow-
probability, which the project's test environment does not share; docs/benchmarks.md
says how to make it), so it imports nothing of camlab: it rebuilds the same network
itself. VGG19-GAP as camlab.networks.models builds it (RGB [0, 255] -> caffe preprocessing ->
VGG19 without its top -> GlobalAveragePooling2D -> bias-free Dense), random weights
seeded by --seed, float32, the Dense linear (the logits, as classifier.explain makes
them; xplique recommends explaining logits). The images are uniform in [0, 255] from
numpy's default_rng(--seed), as bench_cam.random_images draws them.

Each method is xplique's explainer with the parameters of the project's defaults
(camlab/maps/method_spec.py): 32 inputs per batch (ATTRIBUTION_BATCH), SmoothGrad 50 noisy
copies, Integrated Gradients 50 steps, occlusion a square of 1/8 of the side moved by
1/16 of it, RISE 2000 masks on a 7x7 grid, Grad-CAM and Grad-CAM++ on the layer that
feeds GAP. The work timed is what bench_cam.py times for ours: the top-1 class's map at
input resolution, the targets (one-hot of the top-1 class, from one forward pass made
beforehand) given, the explainer built beforehand.

Two ways to run it:
  python peers_xplique.py --output peers.json     each method: --warmup untimed calls,
                                                  then --repeats timed; writes the JSON
  python peers_xplique.py --serve                 reads a method name per line on stdin,
                                                  runs it once, answers one JSON line
                                                  {"method", "seconds"} on stdout
The second lets bench_cam.py alternate ours and theirs call by call. An unknown method
is one line {"error": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

CAFFE_MEANS_BGR = (103.939, 116.779, 123.68)  # camlab.networks.models' caffe preprocessing
ATTRIBUTION_BATCH = 32  # camlab.maps.method_spec's defaults, restated (no camlab import here)
NOISE_SAMPLES = 50
NOISE_LEVEL = 0.15  # ours: a fraction of each image's range; xplique's std is absolute
IG_STEPS = 50
OCCLUSION_PATCH = 0.125
OCCLUSION_STRIDE = 0.0625
RISE_MASKS = 2000
RISE_GRID = 7
RISE_KEEP = 0.5
GREY = 127.5
LAYER = "block5_pool"  # the layer feeding GAP: camlab's default layer on VGG19
METHODS = ("saliency", "smoothgrad", "integratedgradients", "guidedbackprop", "gradcam",
           "gradcam++", "occlusion", "rise")  # camlab's names of the methods xplique has


def build_model(size: int, classes: int, seed: int) -> tf.keras.Model:
    """VGG19-GAP with random weights (seeded) and linear scores, flat (one graph)."""
    keras = tf.keras
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), name="image")
    bgr = keras.ops.flip(inputs, axis=-1)
    x = keras.layers.Rescaling(1.0, offset=[-mean for mean in CAFFE_MEANS_BGR],
                               name="preprocess")(bgr)
    vgg = keras.applications.VGG19(include_top=False, weights=None, input_tensor=x)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(vgg.output)
    scores = keras.layers.Dense(classes, use_bias=False, name="classifier")(pooled)
    return keras.Model(inputs, scores, name="vgg19_gap")


def explainers(model: tf.keras.Model, size: int, rise_masks: int = RISE_MASKS) -> dict:
    """Each method's xplique explainer, built once (xplique traces on the first call)."""
    from xplique.attributions import (
        GradCAM,
        GradCAMPP,
        GuidedBackprop,
        IntegratedGradients,
        Occlusion,
        Rise,
        Saliency,
        SmoothGrad,
    )

    patch, stride = max(1, round(OCCLUSION_PATCH * size)), max(1, round(OCCLUSION_STRIDE * size))
    batch = ATTRIBUTION_BATCH
    return {
        "saliency": Saliency(model, batch_size=batch),
        "smoothgrad": SmoothGrad(model, batch_size=batch, nb_samples=NOISE_SAMPLES,
                                 noise=NOISE_LEVEL * 255.0, reducer="max"),
        "integratedgradients": IntegratedGradients(model, batch_size=batch, steps=IG_STEPS,
                                                   baseline_value=0.0, reducer="max"),
        "guidedbackprop": GuidedBackprop(model, batch_size=batch, reducer="max"),
        "gradcam": GradCAM(model, batch_size=batch, conv_layer=LAYER),
        "gradcam++": GradCAMPP(model, batch_size=batch, conv_layer=LAYER),
        "occlusion": Occlusion(model, batch_size=batch, patch_size=patch,
                               patch_stride=stride, occlusion_value=GREY),
        "rise": Rise(model, batch_size=batch, nb_samples=rise_masks, grid_size=RISE_GRID,
                     preservation_probability=RISE_KEEP),
    }


class Peer:
    """The model, the images, their top-1 targets and the explainers, made once."""

    def __init__(self, size: int, batch: int, classes: int, seed: int,
                 rise_masks: int = RISE_MASKS):
        self.model = build_model(size, classes, seed)
        pixels = np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3))
        self.images = tf.constant(pixels, tf.float32)
        top_1 = tf.argmax(self.model(self.images, training=False), axis=1)
        self.targets = tf.one_hot(top_1, classes)
        self.tools = explainers(self.model, size, rise_masks)

    def run(self, method: str) -> float:
        """Seconds of one call of `method`'s explainer, its maps made into numpy."""
        start = time.perf_counter()
        np.asarray(self.tools[method](self.images, self.targets))
        return time.perf_counter() - start


def versions() -> dict:
    import keras
    import xplique

    return {"xplique": xplique.__version__, "tensorflow": tf.__version__,
            "keras": keras.__version__, "python": platform.python_version()}


def serve(peer: Peer, lines, out) -> None:
    """One JSON answer per method name read, until the input ends."""
    print(json.dumps({"ready": True, "versions": versions()}), file=out, flush=True)
    for line in lines:
        method = line.strip()
        if not method:
            continue
        if method not in peer.tools:
            answer = {"error": f"{method!r} is not one of {', '.join(METHODS)}"}
        else:
            answer = {"method": method, "seconds": peer.run(method)}
        print(json.dumps(answer), file=out, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--rise-masks", type=int, default=RISE_MASKS)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="")
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args(argv)
    peer = Peer(args.size, args.batch, args.classes, args.seed, args.rise_masks)
    if args.serve:
        serve(peer, sys.stdin, sys.stdout)
        return
    rows = {}
    for method in args.methods.split(","):
        times = [peer.run(method) for _ in range(args.warmup + args.repeats)]
        rows[method] = {"seconds": float(np.median(times[args.warmup:])),
                        "all_seconds": times[args.warmup:]}
    result = {"peer": "xplique", "rows": rows, "versions": versions(),
              "image_size": args.size, "batch": args.batch, "layer": LAYER,
              "rise_masks": args.rise_masks,
              "load_average": round(os.getloadavg()[0], 2)}
    text = json.dumps(result, indent=2)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as file:
            file.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
