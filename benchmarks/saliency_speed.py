"""Saliency before and after issue 21's fix, and an xplique-style gradient, in one run.

Run `python benchmarks/saliency_speed.py` (about a minute on 2 cores). VGG19-GAP with
random weights, 224 px, a batch of 8, float32, the top-1 class's map at input resolution,
the forward pass that chooses the class included, as issue 21 measured it. Three ways:
- eager: the saliency this project had (a GradientTape run op by op), restated here;
- ours: methods.maps_for_classes("saliency"), one compiled graph (attribution.py);
- xplique-style: xplique 2.0's computation restated (a tf.function of the gradient of
  sum(scores * one-hot targets), |.|, max over channels): xplique itself cannot share
  this environment (it pins an older TensorFlow).
The runs alternate, so a load on the machine falls on all three alike; each line is the
median of REPEATS runs after one warm-up (which includes tracing).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from camlab.maps import methods  # noqa: E402
from camlab.networks import classifier, models  # noqa: E402

SIZE, BATCH, CLASSES, REPEATS = 224, 8, 10, 3


def eager_saliency(model, images, classes):
    """The saliency of commit 907e7a8: images repeated per class, one eager tape."""
    k = classes.shape[1]
    repeated = tf.repeat(images, k, axis=0)
    with tf.GradientTape() as tape:
        tape.watch(repeated)
        scores = tf.gather(tf.cast(model.model(repeated, training=False), tf.float32),
                           tf.reshape(classes, [-1]), batch_dims=1)
    return tf.reduce_max(tf.abs(tape.gradient(scores, repeated)), axis=-1)


def main() -> None:
    keras.utils.set_random_seed(0)
    model = classifier.explain(models.build_model("vgg19", SIZE, CLASSES))
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (BATCH, SIZE, SIZE, 3)),
                         tf.float32)

    @tf.function
    def xplique_style(images, targets):
        with tf.GradientTape() as tape:
            tape.watch(images)
            score = tf.reduce_sum(model.model(images, training=False) * targets, axis=-1)
        return tf.reduce_max(tf.abs(tape.gradient(score, images)), axis=-1)

    def top_1():
        features, probs = model.features(images)
        return features, tf.math.top_k(probs, 1).indices

    def eager():
        return eager_saliency(model, images, top_1()[1]).numpy()

    def ours():
        features, classes = top_1()
        return methods.maps_for_classes("saliency", model, features, classes, images).numpy()

    def xplique():
        targets = tf.one_hot(top_1()[1][:, 0], CLASSES)
        return xplique_style(images, targets).numpy()

    runs = {"eager (before)": eager, "ours (after)": ours, "xplique-style": xplique}
    maps = {name: run() for name, run in runs.items()}  # the warm-up, tracing included
    reference = maps["eager (before)"]
    for name, values in maps.items():
        difference = np.abs(values.reshape(reference.shape) - reference).max()
        assert difference <= 1e-5 * reference.max(), (name, difference)
    seconds = {name: [] for name in runs}
    for _ in range(REPEATS):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    medians = {name: float(np.median(times)) for name, times in seconds.items()}
    print(f"VGG19-GAP, random weights, {SIZE} px, batch {BATCH}, float32, top-1 saliency, "
          f"forward pass included; median of {REPEATS}")
    for name, median in medians.items():
        print(f"{name:16s} {median:6.2f} s   eager / this: "
              f"{medians['eager (before)'] / median:4.2f}x")


if __name__ == "__main__":
    main()
