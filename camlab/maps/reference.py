"""The seed post's CAM loop, one image and one class at a time, kept as the reference.

Nothing in the scripts calls it: the tests check the vectorized path against it, and the
benchmark times the vectorized path against it (`cam_speedup_vs_seed_loop`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def seed_loop_maps(features: np.ndarray, weights: np.ndarray, probs: np.ndarray, k: int,
                   threshold: float, size: tuple[int, int]) -> np.ndarray:
    """The post's display maps of each image's k most probable classes: (batch, k, H, W).

    For image i and class c: CAM = F_i @ W[:, c], upsampled with one `tf.image.resize`
    call, divided by the maximum of the image's low-resolution top-1 map, values below
    `threshold` set to 0. `features` (batch, h, w, channels), `weights` (channels,
    classes), `probs` (batch, classes), all numpy.
    """
    out = np.empty((len(features), k, *size), np.float32)
    for i in range(len(features)):
        order = np.argsort(probs[i])[::-1][:k]
        best = features[i] @ weights[:, order[0]]
        for rank, c in enumerate(order):
            cam = (features[i] @ weights[:, c])[..., None]
            up = tf.image.resize(cam, size).numpy()[..., 0] / best.max()
            up[up < threshold] = 0.0
            out[i, rank] = up
    return out
