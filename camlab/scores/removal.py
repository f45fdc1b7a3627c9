"""Deletion and insertion (Petsiuk et al. 2018, "RISE", Sec. 4.1), for many maps at once.

Pixels are ranked by map value, highest first. Deletion replaces the top fraction
t = 0, 1/steps, ..., 1 of the pixels with a baseline (here a blurred copy); insertion
starts from the baseline and puts the top pixels back. The class probability is tracked
along the way and its curve integrated with the trapezoid rule: a faithful map gives a
low deletion AUC and a high insertion AUC.

Nearly all of an evaluation's time is these forward passes, so they are planned for a
whole batch and every map source at once (the methods and the baselines): the end
points (the image itself, and the fully replaced image) are the same for every map and
run once per image, every other perturbed image once however many maps give it, and all
go through the model in chunks of a fixed size (the last padded), so an image's
probabilities do not depend on which other maps were scored beside it.

Shapes: `images`, `baselines` (n, H, W, 3) float32; `maps` (n, H, W); `positions`
(sources, n, H, W) int32, each pixel's rank in its map (0 = highest).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from camlab.networks.frozen import Frozen

KINDS = ("deletion", "insertion")


def pixel_positions(maps) -> tf.Tensor:
    """Each pixel's rank (n, H, W) int32 in its map, highest value first, ties in
    row-major order."""
    maps = tf.convert_to_tensor(maps, tf.float32)
    order = tf.argsort(tf.reshape(maps, [maps.shape[0], -1]), axis=1, direction="DESCENDING",
                       stable=True)
    return tf.reshape(tf.argsort(order, axis=1, stable=True), tf.shape(maps))


def step_counts(steps: int, pixels: int) -> np.ndarray:
    """How many pixels are moved at each of the steps + 1 points t = 0, 1/steps, ..., 1."""
    return np.round(np.linspace(0.0, float(pixels), steps + 1)).astype(np.int32)


class Plan:
    """The perturbed images of one batch: which image, which map, how many pixels moved,
    deletion or insertion, each distinct image once. Call `curves` after
    Remover.probabilities ran it.

    Two maps of one image whose top pixels are the same set at a step (CAM and Grad-CAM
    agree wherever CAM is positive) give the same perturbed image: it is planned once.
    Candidates are found by a hash of the set and confirmed pixel by pixel, so sharing
    never changes a number.
    """

    def __init__(self, images: int, steps: int, pixels: int):
        self.steps, self.pixels, self.counts = steps, pixels, step_counts(steps, pixels)
        # Jobs 0 .. n - 1: the images; n .. 2n - 1: their baselines (every point t where
        # nothing or everything has moved).
        self.rows = [np.arange(images), np.arange(images)]
        self.sources = [np.zeros(images, np.int32)] * 2
        self.moved = [np.zeros(images, np.int32)] * 2
        self.inserting = [np.zeros(images, bool), np.ones(images, bool)]
        self.size = 2 * images
        self.images = images
        self.shared = 0  # perturbed images another map had planned already
        self._index: dict[tuple[int, str], np.ndarray] = {}
        self._codes = np.random.default_rng(0).integers(0, 2**63, pixels, dtype=np.uint64)
        self._positions: dict[int, np.ndarray] = {}
        self._planned: dict[tuple[str, int, int, int], tuple[int, int]] = {}

    def add(self, source: int, rows: np.ndarray, positions: np.ndarray) -> None:
        """Plans the deletion and insertion curves of map `source` for `rows`, its pixel
        ranks `positions` (n, H, W) (pixel_positions) for all n images of the batch."""
        rows = np.asarray(rows, np.int64)
        flat = np.asarray(positions).reshape(self.images, -1)
        self._positions[source] = flat
        middle = [t for t in range(self.steps + 1) if 0 < self.counts[t] < self.pixels]
        # The hash of the set of the top c pixels: a sum of per-pixel codes (mod 2**64).
        sums = np.cumsum(self._codes[np.argsort(flat[rows], axis=1)], axis=1)
        for kind in KINDS:
            index = np.empty((len(rows), self.steps + 1), np.int64)
            start, end = (rows, rows + self.images)[::1 if kind == "deletion" else -1]
            for t, count in enumerate(self.counts):
                index[:, t] = start if count == 0 else end  # overwritten for the middle
            new_rows, new_moved = [], []
            for i, row in enumerate(rows):
                for t in middle:
                    count = int(self.counts[t])
                    key = (kind, int(row), count, int(sums[i, count - 1]))
                    job = self._same_image(key, source, row, count)
                    if job is None:
                        job = self.size + len(new_rows)
                        self._planned[key] = (job, source)
                        new_rows.append(row)
                        new_moved.append(count)
                    index[i, t] = job
            self.rows.append(np.array(new_rows, np.int64))
            self.sources.append(np.full(len(new_rows), source, np.int32))
            self.moved.append(np.array(new_moved, np.int32))
            self.inserting.append(np.full(len(new_rows), kind == "insertion"))
            self._index[(source, kind)] = index
            self.size += len(new_rows)

    def _same_image(self, key: tuple, source: int, row: int, count: int) -> int | None:
        """The job already planned for the same perturbed image, or None."""
        found = self._planned.get(key)
        if found is None:
            return None
        job, other = found
        if not np.array_equal(self._positions[other][row] < count,
                              self._positions[source][row] < count):
            return None  # a hash collision: a different set of pixels
        self.shared += 1
        return job

    def jobs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(rows, sources, moved, inserting), one entry per perturbed image."""
        return tuple(np.concatenate(part) for part in (self.rows, self.sources, self.moved,
                                                        self.inserting))

    def curves(self, probs: np.ndarray, source: int, classes: np.ndarray
               ) -> dict[str, np.ndarray]:
        """The planned rows' curves of map `source`: {"deletion_curve", "insertion_curve":
        (rows, steps + 1), "deletion_auc", "insertion_auc": (rows,)} for `classes` (rows,),
        from `probs` (jobs, classes) of Remover.probabilities."""
        out = {}
        for kind in KINDS:
            index = self._index[(source, kind)]
            curve = probs[index, np.asarray(classes)[:, None]]
            out[f"{kind}_curve"] = curve
            out[f"{kind}_auc"] = np.trapezoid(curve, dx=1.0 / self.steps, axis=1)
        return out


class Remover:
    """Runs a Plan through `forward` ((chunk, H, W, 3) images -> (chunk, classes)
    probabilities), `chunk` images per pass, every pass of the same size, on images of
    `size` (H, W) pixels (None: any). The passes run frozen (camlab.networks.frozen)."""

    def __init__(self, forward: Callable[[tf.Tensor], tf.Tensor], chunk: int,
                 size: tuple[int, int] | None = None):
        self.chunk = chunk

        def perturbed(both, positions, rows, sources, moved, inserting):
            """`both` (2n, H, W, 3): the n images, then their n baselines. Deletion goes
            from row i of both to row n + i, insertion the other way; pixels are
            selected, never mixed arithmetically."""
            rank = tf.gather_nd(positions, tf.stack([sources, rows], axis=1))
            revealed = (rank < moved[:, None, None])[..., None]
            count = tf.shape(both)[0] // 2
            later = count * tf.cast(inserting, tf.int32)
            start, end = tf.gather(both, rows + later), tf.gather(both, rows + count - later)
            return tf.where(revealed, end, start)

        height, width = size or (None, None)
        jobs = tf.TensorSpec([chunk], tf.int32)
        self._perturbed = tf.function(perturbed, input_signature=(
            tf.TensorSpec([None, height, width, 3], tf.float32),
            tf.TensorSpec([None, None, height, width], tf.int32), jobs, jobs, jobs,
            tf.TensorSpec([chunk], tf.bool)))
        # One frozen graph of the model for the planned and the other images: freezing is
        # most of a large network's start (about 17 s for VGG19 on a 2-core EPYC), and
        # every image, perturbed or not, goes through the same folded weights.
        self._forward = Frozen(lambda images: tf.cast(forward(images), tf.float32),
                               tf.TensorSpec([chunk, height, width, 3], tf.float32))

    def forward(self, images) -> tf.Tensor:
        """(n, classes) float32 probabilities of any n images, through the same fixed-size
        passes as the planned images (the last one padded)."""
        images = tf.convert_to_tensor(images, tf.float32)
        count = images.shape[0]
        padded = tf.pad(images, [[0, -count % self.chunk], [0, 0], [0, 0], [0, 0]])
        return tf.concat([self._forward(padded[start:start + self.chunk])
                          for start in range(0, padded.shape[0], self.chunk)], axis=0)[:count]

    def probabilities(self, plan: Plan, images, baselines, positions) -> np.ndarray:
        """(jobs, classes) float32: the probabilities of every planned image."""
        rows, sources, moved, inserting = plan.jobs()
        padding = -len(rows) % self.chunk
        rows, sources, moved = (np.pad(part, (0, padding)) for part in (rows, sources, moved))
        inserting = np.pad(inserting, (0, padding))
        both = tf.concat([tf.convert_to_tensor(images, tf.float32),
                          tf.convert_to_tensor(baselines, tf.float32)], axis=0)
        positions = tf.convert_to_tensor(positions, tf.int32)
        parts = [self._forward(self._perturbed(
                     both, positions, *(tf.constant(part[start:start + self.chunk]) for part in
                                        (rows.astype(np.int32), sources, moved, inserting))))
                 for start in range(0, len(rows), self.chunk)]
        return np.concatenate([part.numpy() for part in parts])[:plan.size]


def deletion_insertion_auc(predict: Callable[[tf.Tensor], tf.Tensor], images, baselines,
                           maps, classes, steps: int = 16, chunk: int = 256
                           ) -> dict[str, np.ndarray]:
    """Deletion and insertion of one map per image: {"deletion_auc", "insertion_auc":
    (n,), "deletion_curve", "insertion_curve": (n, steps + 1)} of the probability of
    `classes` (n,) under `predict` ((m, H, W, 3) -> (m, classes))."""
    maps = tf.convert_to_tensor(maps, tf.float32)
    plan = Plan(maps.shape[0], steps, maps.shape[1] * maps.shape[2])
    positions = pixel_positions(maps)
    plan.add(0, np.arange(maps.shape[0]), positions.numpy())
    remover = Remover(predict, chunk, tuple(maps.shape[1:3]))
    probs = remover.probabilities(plan, images, baselines, positions[None])
    return plan.curves(probs, 0, np.asarray(classes))
