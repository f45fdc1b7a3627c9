"""Measures what the project claims about speed, as ratios from one run on one machine.

Run `python benchmarks/bench_cam.py` (about 10 minutes on 2 cores; --PARTS=cam,methods runs
only those parts, --DEMO adds `make demo`'s time). Prints a table and writes
outputs/bench/bench.json. Each timing is the median of REPEATS runs after WARMUP. Part
xplique runs only with --XPLIQUE_PYTHON, the python of xplique's own venv.
docs/benchmarks.md says what every key means and how it is measured:
cam_speedup_vs_seed_loop, cam_floor_ratio, cam_overhead_fraction, pipeline_efficiency,
mixed_precision_speedup, auto_precision_vs_best, backbones, methods_ms_per_image,
vs_tf_keras_vis, vs_xplique, head_only_speedup, demo_seconds; each records what it ran on.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camlab.core import settings  # noqa: E402

PARTS = ("cam", "overhead", "pipeline", "precision", "backbones", "methods",
         "tf_keras_vis", "xplique", "head_only")  # what to measure: any of these
XPLIQUE_PYTHON = ""  # part xplique: the python of xplique's own venv (docs/benchmarks.md);
# "" skips that part with one line
DEMO = False  # True also times make demo's commands and the 7 methods' leaderboard (minutes)
OUTPUT = "outputs/bench/bench.json"  # results; fewer PARTS write bench_<parts>.json beside it
# ---- end of settings ----

if __name__ == "__main__":
    settings.before_tensorflow(__file__)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

import cam_utils  # noqa: E402
from camlab.core import runs  # noqa: E402
from camlab.datasets import data  # noqa: E402
from camlab.errors import CamError, check_choice  # noqa: E402
from camlab.maps import methods, reference  # noqa: E402
from camlab.networks import classifier, models  # noqa: E402
from camlab.report.results import LEADERBOARD_METHODS  # noqa: E402  (the README's seven)
from camlab.train import precision, probe, training  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ALL_PARTS = PARTS  # the file's PARTS: every part but the demo
WARMUP = 2  # untimed runs before measuring
REPEATS = 7  # timed runs; the median is reported
CAM_BATCH = 16  # images per CAM batch, as the post's batch size
CAM_SIZE = 320  # pixels; VGG19 gives 10x10x512 feature maps here
NUM_CLASSES = 10  # imagenette's classes
THRESHOLD = 0.3  # the post's display cut
FORWARD_BATCH = 16  # images per VGG19 forward pass for the overhead measurement
PIPELINE_IMAGES = 2000  # demo images per pipeline measurement epoch
PIPELINE_BATCH = 64  # the demo preset's batch size
CACHE_MEMORY_FRACTION = 0.25  # as train_cam.py's default
PRECISION_SIZE = 128  # pixels for the float32 vs mixed-precision VGG19 training comparison
PRECISION_BATCH = 16  # images per training step there
PRECISION_STEPS = 6  # training steps per timed run there
BACKBONE_SIZE = 128  # pixels for the per-backbone rows (4x4 final maps; small_vgg 32x32)
BACKBONE_BATCH = 8  # images per step there
BACKBONE_STEPS = 3  # timed training steps per backbone
METHODS_TOP_K = 3  # maps per image in methods_ms_per_image, as visualize_cam.py's TOP_K
SCORECAM_IMAGES = 1  # images Score-CAM is timed on there (512 forward passes each on VGG19)
SALIENCY_IMAGES = 2  # images saliency is timed on there: its backward pass holds every
# activation of VGG19 at 320 px for each image and class (about 0.3 GB each)
TKV_SIZE = 224  # pixels for vs_tf_keras_vis, as the reference measurement
TKV_BATCH = 8  # images there
TKV_SCORECAM_BACKBONE = "small_vgg"  # Score-CAM's model there: 64 channels, not VGG19's 512
TKV_SCORECAM_SIZE = 64  # pixels for it (and for SmoothGrad's 50 passes an image)
TKV_MAX_N = 16  # channels of Score-CAM's row scorecam_max_n: tf-keras-vis' max_N, our
# SCORECAM_MAX_CHANNELS (Faster Score-CAM)
XPLIQUE_SCRIPT = REPO / "benchmarks" / "peers_xplique.py"  # the peer's side, in its venv
XPLIQUE_METHODS = ("saliency", "guidedbackprop", "gradcam", "gradcam++")  # one pass or
# two each: on VGG19 at TKV_SIZE px, TKV_BATCH images
XPLIQUE_MANY_PASSES = ("smoothgrad", "integratedgradients", "occlusion", "rise")  # 50 to
# 2000 passes an image: on VGG19 at XPLIQUE_SMALL_SIZE px, XPLIQUE_SMALL_BATCH images
XPLIQUE_SMALL_SIZE = 64  # pixels for them (VGG19's minimum is 32)
XPLIQUE_SMALL_BATCH = 2  # images for them
XPLIQUE_RISE_MASKS = 200  # RISE's masks on both sides there (the default 2000 would take
# most of an hour on 2 cores); its cost is linear in the masks
HEAD_SIZE = 320  # pixels for head_only_speedup: the post's
HEAD_BATCH = 8  # images per step there (training, feature extraction and head alike)
HEAD_STEPS = 2  # steps of each timed epoch there: HEAD_BATCH x HEAD_STEPS images
DEMO_RUN = "bench_demo"  # the demo's RUN_NAME here, so the user's outputs/demo stays as it is


def median_seconds(function, warmup: int = WARMUP, repeats: int = REPEATS) -> float:
    """Median wall time of `function()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def vectorized(model, features, probs, classes: int = NUM_CLASSES,
               size: int = CAM_SIZE) -> tf.Tensor:
    """The scripts' path (methods.top_k_maps) for the post's output: all classes ranked."""
    return methods.top_k_maps("cam", model, features, probs, classes, THRESHOLD,
                              (size, size))["maps"]


def bench_cam_grid(model, batch: int = CAM_BATCH, size: int = CAM_SIZE,
                   classes: int = NUM_CLASSES, repeats: int = REPEATS) -> dict:
    """a. Vectorized CAM grid work vs the post's loop, and vs writing the output once.

    Features are random, of the shape `model` (a Classifier at `size` px with `classes`
    classes: VGG19-GAP at 320 px, 10x10x512) gives, as a tensor, as model.features
    returns them; the classifier is set to random weights, which the post's loop is
    given too.
    """
    rng = np.random.default_rng(0)
    shape = tuple(model.layers[model.default_layer].shape[1:])
    features = rng.uniform(0, 4, (batch, *shape)).astype(np.float32)
    weights = rng.normal(0, 0.05, (shape[-1], classes)).astype(np.float32)
    model.cam_kernel.assign(weights)
    probs = tf.nn.softmax(features.mean(axis=(1, 2)) @ weights)
    on_device = tf.constant(features)
    ours = vectorized(model, on_device, probs, classes, size).numpy()
    reference = reference_loop(features, weights, probs.numpy(), classes, size)
    # Same maps up to float rounding, which can flip a value lying on the threshold itself.
    on_cut = np.minimum(np.abs(ours - THRESHOLD), np.abs(reference - THRESHOLD)) < 1e-5
    if not (np.isclose(ours, reference, rtol=1e-4, atol=1e-5) | on_cut).all():
        raise AssertionError("vectorized CAMs differ from the seed loop's")
    # Time until the maps exist as a tensor (eager CPU ops return when done; reading one
    # value makes sure). Tensor.numpy() copies the output into a new array, a second pass
    # over it that the figure never needs (np.asarray shares the tensor's memory
    # instead): both are reported beside, not inside.
    def maps():
        return vectorized(model, on_device, probs, classes, size)

    seconds = median_seconds(lambda: maps()[0, 0, 0, 0].numpy(), repeats=repeats)
    to_numpy = median_seconds(lambda: maps().numpy(), repeats=repeats)
    as_array = median_seconds(lambda: np.asarray(maps()), repeats=repeats)
    loop = median_seconds(lambda: reference_loop(features, weights, probs.numpy(), classes,
                                                 size), repeats=3)
    fill = median_seconds(lambda: np.full(ours.shape, 1.0, np.float32), repeats=repeats)
    where = {"batch": batch, "image_size": size, "classes": classes,
             "feature_shape": list(shape), "output_mb": round(ours.nbytes / 2**20, 1),
             "vectorized_s": seconds, "vectorized_with_numpy_copy_s": to_numpy,
             "vectorized_as_numpy_view_s": as_array}
    return {"cam_speedup_vs_seed_loop": {"value": loop / seconds, "seed_loop_s": loop,
                                         **where},
            "cam_floor_ratio": {"value": seconds / fill, "fill_s": fill, **where}}


def reference_loop(features, weights, probs, classes: int, size: int) -> np.ndarray:
    """The seed post's per-image, per-class loop over all classes (camlab.maps.reference)."""
    return reference.seed_loop_maps(features, weights, probs, classes, THRESHOLD,
                                    (size, size))


def bench_overhead(model) -> dict:
    """b. Forward pass + top-3 CAM figure maps, against the forward pass alone."""
    images = np.random.default_rng(1).uniform(0, 255, (FORWARD_BATCH, CAM_SIZE, CAM_SIZE, 3))
    images = tf.constant(images, tf.float32)
    forward = tf.function(model.features)

    def with_cams():
        features, probs = forward(images)
        shown = methods.top_k_maps("cam", model, features, probs, 3, THRESHOLD,
                                   (CAM_SIZE, CAM_SIZE))
        return shown["maps"].numpy()

    alone = median_seconds(lambda: [t.numpy() for t in forward(images)], repeats=3)
    both = median_seconds(with_cams, repeats=3)
    return {"cam_overhead_fraction": {"value": both / alone - 1, "forward_s": alone,
                                      "forward_and_cams_s": both, "backbone": "vgg19",
                                      "batch": FORWARD_BATCH, "image_size": CAM_SIZE,
                                      "top_k": 3}}


def demo_training_throughput(dataset: tf.data.Dataset, steps: int) -> float:
    """Images/s of one `fit` epoch of the demo model (after a warm-up epoch)."""
    keras.utils.set_random_seed(0)
    model = models.build_model("small_vgg", 64, NUM_CLASSES)
    training.compile_model(model, 1e-3)
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps * PIPELINE_BATCH / (time.perf_counter() - start)


def bench_pipeline(policy: str) -> dict:
    """c. `fit` fed by the real tfds pipeline (cam_shapes, cached as CACHE="auto" does)
    against the same model fed from tensors already in memory."""
    keras.mixed_precision.set_global_policy(policy)
    data_dir = tempfile.mkdtemp(prefix="bench_tfds_")
    builder = data.get_builder("cam_shapes", data_dir)
    split = f"train[:{PIPELINE_IMAGES}]"
    examples = data.load_split(builder, split, data_dir, shuffle_seed=0)
    cache = training.should_cache("auto", PIPELINE_IMAGES, 64, CACHE_MEMORY_FRACTION)
    pipeline = data.batches(examples, 64, NUM_CLASSES, PIPELINE_BATCH, PIPELINE_IMAGES, 0,
                            cache=cache).repeat()
    images, labels = next(iter(data.batches(examples, 64, NUM_CLASSES, PIPELINE_IMAGES)))
    in_memory = (tf.data.Dataset.from_tensor_slices((images, labels)).batch(PIPELINE_BATCH)
                 .repeat().prefetch(tf.data.AUTOTUNE))
    steps = PIPELINE_IMAGES // PIPELINE_BATCH
    fed = demo_training_throughput(pipeline, steps)
    memory = demo_training_throughput(in_memory, steps)
    keras.mixed_precision.set_global_policy("float32")
    return {"pipeline_efficiency": {"value": fed / memory, "pipeline_images_per_s": fed,
                                    "in_memory_images_per_s": memory, "cached": cache,
                                    "backbone": "small_vgg", "image_size": 64,
                                    "batch": PIPELINE_BATCH, "precision": policy,
                                    "dataset": "cam_shapes"}}


def vgg19_training_throughput(policy: str) -> float:
    """VGG19-GAP training images/s under a dtype policy, on random data."""
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = models.build_model("vgg19", PRECISION_SIZE, NUM_CLASSES)
    training.compile_model(model, 1e-5)
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 255, (PRECISION_BATCH, PRECISION_SIZE, PRECISION_SIZE, 3))
    labels = np.eye(NUM_CLASSES)[rng.integers(0, NUM_CLASSES, PRECISION_BATCH)]
    data = tf.data.Dataset.from_tensors((images.astype(np.float32),
                                         labels.astype(np.float32))).repeat()
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    seconds = median_seconds(
        lambda: model.fit(data, epochs=1, steps_per_epoch=PRECISION_STEPS, verbose=0),
        warmup=0, repeats=3)
    keras.mixed_precision.set_global_policy("float32")
    return PRECISION_STEPS * PRECISION_BATCH / seconds


def precision_speeds() -> dict[str, float]:
    """VGG19-GAP training images/s in float32 and in the mixed policy of this hardware
    (mixed_float16 on a GPU, mixed_bfloat16 on a CPU), measured one after the other."""
    mixed = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    return {policy: vgg19_training_throughput(policy) for policy in ("float32", mixed)}


def bench_precision(speeds: dict[str, float]) -> dict:
    """d. float32 against the mixed policy of this hardware (precision_speeds)."""
    mixed = next(policy for policy in speeds if policy != "float32")
    return {"mixed_precision_speedup": {"value": speeds[mixed] / speeds["float32"],
                                        "float32_images_per_s": speeds["float32"],
                                        "mixed_images_per_s": speeds[mixed], "policy": mixed,
                                        "backbone": "vgg19", "image_size": PRECISION_SIZE,
                                        "batch": PRECISION_BATCH}}


@contextlib.contextmanager
def empty_precision_cache():
    """Points camlab.train.precision's cache at an empty folder, so "auto" times afresh."""
    saved = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as folder:
        os.environ["XDG_CACHE_HOME"] = folder
        try:
            yield
        finally:
            if saved is None:
                del os.environ["XDG_CACHE_HOME"]
            else:
                os.environ["XDG_CACHE_HOME"] = saved


def bench_auto_precision(speeds: dict[str, float]) -> dict:
    """e. The policy MIXED_PRECISION="auto" picks for this comparison's model, timed afresh
    (empty cache): its training images/s in precision_speeds over the faster policy's there.
    1.0 when auto picked the faster. It may keep float32 when bfloat16 is less than
    precision.MIN_SPEEDUP times faster, so down to 1 / 1.1 = 0.91 is by design; below
    that, auto's short timing and this longer one disagree."""
    with empty_precision_cache():
        choice = precision.precision_choice("auto", "vgg19", PRECISION_SIZE, NUM_CLASSES,
                                            PRECISION_BATCH)
    best = max(speeds, key=speeds.get)
    return {"auto_precision_vs_best": {
        "value": speeds[choice["policy"]] / speeds[best], "auto_policy": choice["policy"],
        "decided_by": choice["decided_by"], "best_policy": best,
        **{f"{policy}_images_per_s": speed for policy, speed in speeds.items()},
        **{f"auto_timed_{key}": choice[key] for key in
           ("float32_images_per_s", "mixed_bfloat16_images_per_s") if key in choice},
        "backbone": "vgg19", "image_size": PRECISION_SIZE, "batch": PRECISION_BATCH}}


def backbone_row(name: str) -> dict:
    """Training images/s (float32, Adam, after one compiled warm-up step) and the CAM
    overhead of the figure's top-3 maps as a fraction of the forward pass, for a backbone."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    model = models.build_model(name, BACKBONE_SIZE, NUM_CLASSES)
    training.compile_model(model, 1e-4)
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, (BACKBONE_BATCH, BACKBONE_SIZE, BACKBONE_SIZE, 3))
    images = tf.constant(images, tf.float32)
    labels = tf.constant(np.eye(NUM_CLASSES)[rng.integers(0, NUM_CLASSES, BACKBONE_BATCH)],
                         tf.float32)
    data = tf.data.Dataset.from_tensors((images, labels)).repeat()
    model.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
    train_s = median_seconds(lambda: model.fit(data, epochs=1, steps_per_epoch=BACKBONE_STEPS,
                                               verbose=0), warmup=0, repeats=3)
    explained = classifier.explain(model, BACKBONE_SIZE)
    forward = tf.function(explained.features)

    def with_cams():
        features, probs = forward(images)
        return methods.top_k_maps("cam", explained, features, probs, 3, THRESHOLD,
                                  (BACKBONE_SIZE, BACKBONE_SIZE))["maps"].numpy()

    alone = median_seconds(lambda: [t.numpy() for t in forward(images)], repeats=3)
    both = median_seconds(with_cams, repeats=3)
    return {"training_images_per_s": BACKBONE_STEPS * BACKBONE_BATCH / train_s,
            "cam_overhead_fraction": both / alone - 1, "forward_s": alone,
            "feature_shape": list(explained.layers[explained.default_layer].shape[1:])}


def bench_backbones() -> dict:
    """One row per backbone; measured, no bar set (issue #11)."""
    rows = {name: backbone_row(name) for name in models.BACKBONES}
    return {"backbones": {"image_size": BACKBONE_SIZE, "batch": BACKBONE_BATCH,
                          "precision": "float32", "rows": rows}}


def random_images(count: int, size: int, seed: int = 4) -> tf.Tensor:
    """(count, size, size, 3) float32 RGB in [0, 255]."""
    images = np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3))
    return tf.constant(images, tf.float32)


def bench_methods(model, images, top_k: int = METHODS_TOP_K,
                  scorecam_images: int = SCORECAM_IMAGES,
                  saliency_images: int = SALIENCY_IMAGES, repeats: int = 3,
                  options: methods.Options = methods.DEFAULT_OPTIONS) -> dict:
    """f. ms per image of each method's figure maps, methods.top_k_maps for the `top_k`
    most probable classes (the maps and their display transform), given the features:
    the forward pass that makes them is NOT included, and is reported beside.
    `options`: the methods' settings, the scripts' defaults unless given; the perturbation
    methods cost in proportion to their passes (NOISE_SAMPLES, IG_STEPS, RISE_MASKS and
    the occlusion square's places), so a cheaper setting is timed with its own.

    Score-CAM makes its own forward pass per channel (512 per image on VGG19): it is
    timed once, with no warm-up, on the first `scorecam_images` images only. Saliency's
    backward pass through the whole network keeps every activation of every (image,
    class) pair: it is timed on the first `saliency_images`.
    """
    size = images.shape[1]
    forward = tf.function(model.features)
    features, probs = forward(images)
    forward_s = median_seconds(lambda: [t.numpy() for t in forward(images)], warmup=1,
                               repeats=repeats)
    fewer = {"scorecam": scorecam_images, "saliency": saliency_images}
    rows = {}
    for method in methods.METHODS:
        count = min(fewer.get(method, len(images)), len(images))

        def figure(method=method, count=count):
            return methods.top_k_maps(method, model, features[:count], probs[:count], top_k,
                                      THRESHOLD, (size, size), images[:count],
                                      options=options)["maps"].numpy()

        seconds = (median_seconds(figure, warmup=0, repeats=1) if method == "scorecam"
                   else median_seconds(figure, warmup=1, repeats=repeats))
        rows[method] = 1000 * seconds / count
    return {"methods_ms_per_image": {
        "rows": rows, "forward_ms_per_image": 1000 * forward_s / len(images),
        "forward_included": False, "top_k": top_k, "batch": len(images),
        "image_size": size, "layer": model.default_layer, "precision": "float32",
        "scorecam": f"one run on {scorecam_images} image(s), "
                    f"{model.layers[model.default_layer].shape[-1]} forward passes each",
        "saliency": f"on {saliency_images} image(s)"}}


def their_tool(method: str, model):
    """tf-keras-vis' tool for `method` on the classifier's Keras model (whose output
    activation classifier.explain has already made linear)."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

    tools = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "layercam": Layercam,
             "scorecam": Scorecam, "saliency": Saliency, "smoothgrad": Saliency}
    return tools[method](model.source, model_modifier=ReplaceToLinear(), clone=True)


def timed_pair(ours, theirs, warmup: int, repeats: int) -> tuple[float, float]:
    """Median seconds of `ours()` and `theirs()`, run alternately so that a load on the
    machine falls on both alike."""
    times = ([], [])
    for run in range(warmup + repeats):
        for side, function in enumerate((ours, theirs)):
            start = time.perf_counter()
            function()
            if run >= warmup:
                times[side].append(time.perf_counter() - start)
    return float(np.median(times[0])), float(np.median(times[1]))


def versus_tf_keras_vis(method: str, model, images, warmup: int, repeats: int,
                        max_channels: int = 0) -> dict:
    """One method, both sides: the top-1 class's map at input resolution (unnormalised),
    the top-1 classes given to both beforehand; the CAM family's forward pass included
    (our_top_1_maps). Score-CAM with `max_channels` N keeps N channels on both sides
    (their max_N, our SCORECAM_MAX_CHANNELS); saliency and SmoothGrad are their Saliency
    (SmoothGrad: smooth_samples NOISE_SAMPLES, smooth_noise NOISE_LEVEL, as ours)."""
    from tf_keras_vis.utils.scores import CategoricalScore

    top_1 = tf.argmax(model.features(images)[1], axis=1, output_type=tf.int32)[:, None]
    tool, score = their_tool(method, model), CategoricalScore(list(top_1.numpy()[:, 0]))
    layer = model.default_layer.rsplit("/", 1)[-1]
    pixels = images.numpy()
    options = dataclasses.replace(methods.DEFAULT_OPTIONS, scorecam_max_channels=max_channels)

    def ours():
        return our_top_1_maps(method, model, images, top_1, options)

    def theirs():
        if method in ("saliency", "smoothgrad"):
            samples = options.noise_samples if method == "smoothgrad" else 0
            return tool(score, pixels, smooth_samples=samples,
                        smooth_noise=options.noise_level, normalize_map=False)
        extra = ({"batch_size": methods.SCORECAM_BATCH, "max_N": max_channels or None}
                 if method == "scorecam" else {})
        with contextlib.redirect_stdout(io.StringIO()):  # Score-CAM's predict progress bar
            return tool(score, pixels, penultimate_layer=layer,
                        seek_penultimate_conv_layer=False, normalize_cam=False, **extra)

    ours_s, theirs_s = timed_pair(ours, theirs, warmup, repeats)
    return {"value": theirs_s / ours_s, "ours_s": ours_s, "theirs_s": theirs_s}


def bench_tf_keras_vis(model, images, scorecam_model, scorecam_images, warmup: int = 1,
                       repeats: int = 3) -> dict:
    """g. Speed-up over tf-keras-vis (theirs_s / ours_s) per shared method, both in this
    run on the same float32 model and batch. Score-CAM runs one forward pass per channel
    and image, so it is compared on `scorecam_model` and `scorecam_images` instead (both
    sides, all channels: no max_N), with the same masked images per pass."""
    rows = {method: versus_tf_keras_vis(method, model, images, warmup, repeats)
            for method in ("gradcam", "gradcam++", "layercam", "saliency")}
    for method in ("scorecam", "smoothgrad"):
        rows[method] = versus_tf_keras_vis(method, scorecam_model, scorecam_images, warmup,
                                           repeats)
    rows["scorecam_max_n"] = versus_tf_keras_vis("scorecam", scorecam_model, scorecam_images,
                                                 warmup, repeats, TKV_MAX_N)
    described = {"model": model.source.name, "image_size": images.shape[1],
                 "batch": len(images), "layer": model.default_layer}
    scorecam_layer = scorecam_model.layers[scorecam_model.default_layer]
    return {"vs_tf_keras_vis": {
        "rows": rows, **described, "precision": "float32", "weights": "random",
        "work": "top-1 map at input resolution, unnormalised, forward pass included; "
                "top-1 classes given to both; tf-keras-vis tools built beforehand",
        "scorecam": {"model": scorecam_model.source.name,
                     "image_size": scorecam_images.shape[1], "batch": len(scorecam_images),
                     "channels": scorecam_layer.shape[-1], "max_N": None,
                     "masked_images_per_pass": methods.SCORECAM_BATCH},
        "scorecam_max_n": {"max_N": TKV_MAX_N, "on": "the scorecam block's model"},
        "smoothgrad": {"on": "the scorecam block's model", "samples": methods.DEFAULT_OPTIONS
                       .noise_samples, "noise": methods.DEFAULT_OPTIONS.noise_level}}}


def xplique_skip_reason(python: str) -> str:
    """Why part xplique cannot run with XPLIQUE_PYTHON=`python` ("" when it can)."""
    if not python:
        return ("part xplique skipped: XPLIQUE_PYTHON is not set (the python of xplique's "
                "own venv; docs/benchmarks.md says how to make it)")
    if not Path(python).is_file():
        return (f"part xplique skipped: XPLIQUE_PYTHON={python} does not exist (make "
                "xplique's venv as docs/benchmarks.md says, or point it at its bin/python)")
    return ""


def peer_seconds(line: str, method: str) -> float:
    """The seconds in the peer's JSON answer `line` to `method`; RuntimeError for
    anything else (an error it reports, another method's answer, no answer)."""
    import json

    try:
        answer = json.loads(line)
    except ValueError:
        raise RuntimeError(f"xplique's peer answered {line!r} to {method!r}, not JSON "
                           "(did it crash? its stderr is above)") from None
    if "error" in answer or answer.get("method") != method:
        raise RuntimeError(f"xplique's peer answered {answer} to {method!r}")
    return float(answer["seconds"])


class Peer:
    """benchmarks/peers_xplique.py --serve in xplique's venv: one timed call per `seconds`."""

    def __init__(self, python: str, size: int, batch: int, classes: int,
                 methods_run: tuple[str, ...], rise_masks: int, script: Path = XPLIQUE_SCRIPT,
                 seed: int = 4):
        self.process = subprocess.Popen(
            [python, str(script), "--serve", f"--size={size}", f"--batch={batch}",
             f"--classes={classes}", f"--seed={seed}", f"--rise-masks={rise_masks}",
             f"--methods={','.join(methods_run)}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        import json

        ready = self.process.stdout.readline()
        if not ready.startswith("{"):
            self.close()
            raise RuntimeError("xplique's peer did not start (its stderr is above)")
        self.versions = json.loads(ready).get("versions", {})

    def seconds(self, method: str) -> float:
        self.process.stdin.write(method + "\n")
        self.process.stdin.flush()
        return peer_seconds(self.process.stdout.readline(), method)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def alternated(ours, theirs, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds of `ours()` (wall) and of `theirs()` (the seconds it returns, timed in the
    peer's process), called alternately, warm-ups dropped."""
    times = ([], [])
    for run in range(warmup + repeats):
        start = time.perf_counter()
        ours()
        elapsed = time.perf_counter() - start
        reported = theirs()
        if run >= warmup:
            times[0].append(elapsed)
            times[1].append(reported)
    return times


def ratio_row(ours: list[float], theirs: list[float]) -> dict:
    """A method's row: the medians, `value` = theirs / ours (the speed-up over the peer)
    and `ours_over_peer`, its inverse."""
    ours_s, theirs_s = float(np.median(ours)), float(np.median(theirs))
    return {"value": theirs_s / ours_s, "ours_over_peer": ours_s / theirs_s,
            "ours_s": ours_s, "theirs_s": theirs_s, "ours_all_s": ours,
            "theirs_all_s": theirs}


def our_top_1_maps(method: str, model, images, top_1,
                   options=methods.DEFAULT_OPTIONS) -> np.ndarray:
    """Ours as the peer comparisons time it: the top-1 class's map at input resolution,
    unnormalised. The CAM family makes its features with Classifier.features (the
    forward pass) and is upsampled; a map of the pixels is given no features (it reads
    none: its passes are its own)."""
    if methods.REGISTRY[method].on_input:
        return methods.maps_for_classes(method, model, None, top_1, images,
                                        options=options).numpy()
    features, _ = model.features(images)
    maps = methods.maps_for_classes(method, model, features, top_1, images)
    return cam_utils.upsample(maps, tuple(images.shape[1:3])).numpy()


def versus_xplique(python: str, model, images, methods_run: tuple[str, ...], warmup: int,
                   repeats: int, options=None, script: Path = XPLIQUE_SCRIPT) -> dict:
    """Rows of `methods_run`, ours against xplique's peer process on the same
    architecture, size and batch, alternately."""
    options = options or methods.DEFAULT_OPTIONS
    top_1 = tf.argmax(model.features(images)[1], axis=1, output_type=tf.int32)[:, None]
    peer = Peer(python, images.shape[1], len(images), model.num_classes, methods_run,
                options.rise_masks, script)
    rows = {}
    try:
        for method in methods_run:
            rows[method] = ratio_row(*alternated(
                lambda method=method: our_top_1_maps(method, model, images, top_1, options),
                lambda method=method: peer.seconds(method), warmup, repeats))
    finally:
        peer.close()
    return {"rows": rows, "versions": peer.versions}


def bench_xplique(python: str, model, images, small_model, small_images, warmup: int = 1,
                  repeats: int = 3, few_methods: tuple[str, ...] = XPLIQUE_METHODS,
                  many_methods: tuple[str, ...] = XPLIQUE_MANY_PASSES,
                  rise_masks: int = XPLIQUE_RISE_MASKS, script: Path = XPLIQUE_SCRIPT
                  ) -> dict:
    """j. Speed-up over xplique 2.0.2 (theirs_s / ours_s) per shared method, xplique in
    its own venv (`python`), run by benchmarks/peers_xplique.py beside this process, the
    calls alternating. The methods of one or two passes (`few_methods`) on `model` and
    `images`; those of 50 to 2000 passes an image (`many_methods`) on `small_model` and
    `small_images`, RISE with `rise_masks` masks on both sides."""
    load_before = round(os.getloadavg()[0], 2)
    few = versus_xplique(python, model, images, few_methods, warmup, repeats,
                         script=script)
    options = dataclasses.replace(methods.DEFAULT_OPTIONS, rise_masks=rise_masks)
    many = versus_xplique(python, small_model, small_images, many_methods, warmup, repeats,
                          options, script)
    return {"vs_xplique": {
        "rows": {**few["rows"], **many["rows"]},
        "model": model.source.name, "image_size": images.shape[1], "batch": len(images),
        "layer": model.default_layer, "precision": "float32", "weights": "random",
        "many_passes": {"methods": list(many_methods), "model": small_model.source.name,
                        "image_size": small_images.shape[1], "batch": len(small_images),
                        "rise_masks": rise_masks},
        "work": "top-1 map at input resolution, unnormalised; top-1 classes given to both; "
                "CAM family: forward pass included; xplique's explainers built beforehand",
        "peer_versions": few["versions"], "cpu": runs.cpu_model(),
        "load_average_before": load_before, "load_average_after": round(os.getloadavg()[0], 2)}}

def timed_once(function) -> float:
    """Wall seconds of one call of `function()`."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def bench_head_only(backbone: str = "vgg19", size: int = HEAD_SIZE, batch: int = HEAD_BATCH,
                    steps: int = HEAD_STEPS, classes: int = NUM_CLASSES) -> dict:
    """i. TRAIN_LAYERS="head" against a full fine-tune, on the same batch x steps images
    (random, uint8, through train_cam.py's own input code) and the same model, float32.

    full_s: one `fit` epoch of the whole model (data.batches: resize, one-hot), after a
    warm-up step. extract_s: probe.extract over the same images, as train_cam.py runs it
    (backbone in inference mode, its cache file written), after a warm-up batch. head_s:
    one `fit` epoch of probe.head_model on those features (probe.feature_batches, held in
    memory), after a warm-up step. value = full_s / (extract_s + head_s): the images/s of
    a head-only epoch that pays the whole one-off extraction, over a full epoch's. Each is
    timed once: the epochs are a few batches of VGG19 at 320 px.
    """
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    model = models.build_model(backbone, size, classes)
    training.compile_model(model, 1e-5)
    count, rng = batch * steps, np.random.default_rng(5)
    examples = tf.data.Dataset.from_tensor_slices({
        "image": rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8),
        "label": rng.integers(0, classes, count)})
    full = data.batches(examples, size, classes, batch)
    model.fit(full.take(1), epochs=1, shuffle=False, verbose=0)
    full_s = timed_once(lambda: model.fit(full, epochs=1, shuffle=False, verbose=0))
    extractor, head = probe.feature_model(model), probe.head_model(model)
    training.compile_model(head, 1e-5)
    with tempfile.TemporaryDirectory(prefix="bench_features_") as folder, \
            contextlib.redirect_stdout(io.StringIO()):  # extract's line per file
        probe.extract(extractor, examples.take(batch), batch, size, batch, Path(folder), "warm")
        paths = []
        extract_s = timed_once(lambda: paths.extend(probe.extract(
            extractor, examples, count, size, batch, Path(folder), "timed")))
        features = probe.feature_batches(paths, count, classes, batch, in_memory=True)
        head.fit(features.take(1), epochs=1, shuffle=False, verbose=0)
        head_s = timed_once(lambda: head.fit(features, epochs=1, shuffle=False, verbose=0))
    return {"head_only_speedup": {
        "value": full_s / (extract_s + head_s),
        "full_epoch_images_per_s": count / full_s,
        "head_first_epoch_images_per_s": count / (extract_s + head_s),
        "extraction_images_per_s": count / extract_s,
        "head_epoch_images_per_s": count / head_s,
        "full_s": full_s, "extract_s": extract_s, "head_s": head_s, "images": count,
        "batch": batch, "image_size": size, "backbone": backbone, "precision": "float32",
        "weights": "random"}}


def demo_commands(run_name: str = DEMO_RUN) -> list[list[str]]:
    """make demo's two commands, with the run folder named `run_name`."""
    return [[sys.executable, script, "--PRESET=demo", f"--RUN_NAME={run_name}"]
            for script in ("train_cam.py", "visualize_cam.py")]


def last_val_accuracy(history: Path) -> float:
    """val_accuracy of the last epoch in a run's history.csv (KEEP="last": the kept one)."""
    with history.open(newline="", encoding="utf-8") as file:
        return float(list(csv.DictReader(file))[-1]["val_accuracy"])


def bench_demo(commands: list[list[str]], run_name: str = DEMO_RUN, root: Path = REPO) -> dict:
    """h. Wall time of make demo's two commands (`demo_commands`: training from scratch,
    then the heatmap figure) as subprocesses in `root`, and the validation accuracy the
    training reached (the run's history.csv)."""
    seconds = []
    for command in commands:
        start = time.perf_counter()
        subprocess.run(command, cwd=root, check=True, stdout=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - start)
    accuracy = last_val_accuracy(root / "outputs" / run_name / "history.csv")
    return {"demo_seconds": {"value": sum(seconds), "train_s": seconds[0],
                             "visualize_s": seconds[-1], "run_name": run_name,
                             "demo_val_accuracy": accuracy},
            "demo_val_accuracy": {"value": accuracy, "run_name": run_name}}


def bench_leaderboard(run_name: str = DEMO_RUN, root: Path = REPO,
                      methods_list: str = LEADERBOARD_METHODS) -> dict:
    """i. Wall time of `evaluate_cam.py --PRESET=demo` on the demo run's validation split
    (1,000 images), CAM alone and the seven methods' leaderboard, as subprocesses one after
    the other on the same data: what the shared scoring pass costs beside one method."""
    seconds = {}
    for name, chosen in (("one_method", "cam"), ("leaderboard", methods_list)):
        start = time.perf_counter()
        subprocess.run([sys.executable, "evaluate_cam.py", "--PRESET=demo",
                        f"--RUN_NAME={run_name}", f"--METHOD={chosen}"], cwd=root, check=True,
                       stdout=subprocess.DEVNULL)
        seconds[name] = time.perf_counter() - start
    where = {"run_name": run_name, "split": "validation", "methods": methods_list}
    return {"one_method_seconds": {"value": seconds["one_method"], "method": "cam", **where},
            "leaderboard_seconds": {"value": seconds["leaderboard"],
                                    "vs_one_method": seconds["leaderboard"]
                                    / seconds["one_method"], **where}}


def output_path(output: str, parts: tuple[str, ...], demo: bool) -> Path:
    """OUTPUT for a run of every part; for fewer, bench_<parts>.json beside it, so that a
    partial run never replaces the full results."""
    path = Path(output)
    if set(parts) >= set(ALL_PARTS):
        return path
    return path.with_name(f"{path.stem}_{'_'.join(parts + (('demo',) if demo else ()))}"
                          f"{path.suffix}")


def machine() -> dict:
    """What the numbers were measured on, and how busy it was (1-minute load average)."""
    devices = [device.name for device in tf.config.list_logical_devices()]
    return {"cpu": runs.cpu_model(), "cores": os.cpu_count(), "devices": devices,
            "bfloat16_units": precision.cpu_has_bfloat16(),
            "load_average": round(os.getloadavg()[0], 2),
            "versions": runs.library_versions()}


def check_parts(parts: tuple[str, ...], demo: bool) -> tuple[str, ...]:
    """PARTS, each one of the file's; CamError when nothing would be measured."""
    for part in parts:
        check_choice("PARTS", part, ALL_PARTS)
    if not parts and not demo:
        raise CamError("PARTS is empty and DEMO is False: nothing to measure; name parts "
                       f"(--PARTS=cam,methods; any of {', '.join(ALL_PARTS)}) or add --DEMO")
    return parts


def measure(parts: tuple[str, ...], demo: bool, xplique_python: str = "") -> dict:
    """Runs the chosen parts in the file's order; returns their results. Part xplique
    without a usable `xplique_python` is skipped with one line on stderr."""
    tfds.disable_progress_bar()
    results = {}
    if {"cam", "overhead", "methods"} & set(parts):
        vgg19 = classifier.explain(models.build_model("vgg19", CAM_SIZE, NUM_CLASSES),
                                   CAM_SIZE)
    if "cam" in parts:
        results.update(bench_cam_grid(vgg19))
    if "overhead" in parts:
        results.update(bench_overhead(vgg19))
    if "pipeline" in parts:  # the demo's model, in the policy the demo trains in
        results.update(bench_pipeline(precision.precision_choice(
            "auto", "small_vgg", 64, NUM_CLASSES, PIPELINE_BATCH)["policy"]))
    if "precision" in parts:
        speeds = precision_speeds()
        results.update(bench_precision(speeds))
        results.update(bench_auto_precision(speeds))
    if "backbones" in parts:
        results.update(bench_backbones())
    if "methods" in parts:
        results.update(bench_methods(vgg19, random_images(CAM_BATCH, CAM_SIZE)))
    if "tf_keras_vis" in parts:
        keras.utils.set_random_seed(0)
        results.update(bench_tf_keras_vis(
            classifier.explain(models.build_model("vgg19", TKV_SIZE, NUM_CLASSES), TKV_SIZE),
            random_images(TKV_BATCH, TKV_SIZE),
            classifier.explain(models.build_model(TKV_SCORECAM_BACKBONE, TKV_SCORECAM_SIZE,
                                                  NUM_CLASSES), TKV_SCORECAM_SIZE),
            random_images(TKV_BATCH, TKV_SCORECAM_SIZE)))
    if "xplique" in parts and xplique_skip_reason(xplique_python):
        print(xplique_skip_reason(xplique_python), file=sys.stderr)
    elif "xplique" in parts:
        keras.utils.set_random_seed(0)
        results.update(bench_xplique(
            xplique_python,
            classifier.explain(models.build_model("vgg19", TKV_SIZE, NUM_CLASSES), TKV_SIZE),
            random_images(TKV_BATCH, TKV_SIZE),
            classifier.explain(models.build_model("vgg19", XPLIQUE_SMALL_SIZE,
                                                  NUM_CLASSES), XPLIQUE_SMALL_SIZE),
            random_images(XPLIQUE_SMALL_BATCH, XPLIQUE_SMALL_SIZE)))
    if "head_only" in parts:
        results.update(bench_head_only())
    if demo:
        results.update(bench_demo(demo_commands(DEMO_RUN)))
        results.update(bench_leaderboard(DEMO_RUN))
    return results


def print_table(results: dict) -> None:
    """The results as the terminal shows them: one line per key, then the tables."""
    print(f"\n{'key':<28}{'value':>10}  details")
    for key, entry in results.items():
        if isinstance(entry, dict) and "value" in entry:
            details = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in entry.items() if k != "value")
            print(f"{key:<28}{entry['value']:>10.3f}  {details}")
    if "backbones" in results:
        print(f"\n{'backbone':<18}{'train img/s':>12}{'CAM overhead':>14}  feature map")
        for name, row in results["backbones"]["rows"].items():
            print(f"{name:<18}{row['training_images_per_s']:>12.1f}"
                  f"{row['cam_overhead_fraction']:>14.3f}  {row['feature_shape']}")
    if "methods_ms_per_image" in results:
        entry = results["methods_ms_per_image"]
        print(f"\nms per image, top-{entry['top_k']} maps, forward pass "
              f"({entry['forward_ms_per_image']:.1f} ms) not included")
        for method, ms in entry["rows"].items():
            print(f"{method:<18}{ms:>12.1f}")
    for key, peer in (("vs_tf_keras_vis", "tf-keras-vis"), ("vs_xplique", "xplique")):
        if key in results:
            print(f"\n{'vs ' + peer:<20}{'speed-up':>10}{'ours s':>10}{'theirs s':>10}")
            for method, row in results[key]["rows"].items():
                print(f"{method:<20}{row['value']:>10.2f}{row['ours_s']:>10.3f}"
                      f"{row['theirs_s']:>10.3f}")


def run(config: dict) -> Path:
    """The benchmark with resolved settings; returns the file written."""
    parts = check_parts(config["PARTS"], config["DEMO"])
    started = time.perf_counter()
    results = measure(parts, config["DEMO"], config["XPLIQUE_PYTHON"])
    results["parts"] = list(parts) + (["demo"] if config["DEMO"] else [])
    results["machine"] = machine()
    results["seconds"] = round(time.perf_counter() - started, 1)
    print_table(results)
    print(f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
          f"load average {results['machine']['load_average']}; {results['seconds']:.0f} s")
    path = output_path(config["OUTPUT"], parts, config["DEMO"])
    runs.write_json(path, results)
    return path


def main(argv: list[str] | None = None) -> Path:
    return settings.run_script(__file__, run, argv)


if __name__ == "__main__":
    main()
