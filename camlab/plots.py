"""Drawing: turns images and display maps (computed in cam_utils) into the seed's grid."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # scripts write files; no window, no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from camlab.runs import atomic_path  # noqa: E402


def cam_grid(images, maps, probs: np.ndarray, classes: np.ndarray,
             class_names: list[str], alpha: float = 0.3, cmap: str = "magma_r",
             boxes: np.ndarray | None = None, row_names=None) -> Figure:
    """A rows = images, columns = ranks grid of maps drawn over their images.

    `images`: (n, H, W, 3) uint8 RGB, or a list of n such images of different sizes;
    `maps`: (n, k, H, W) in [0, 1] (values above 1 are clipped by vmax), or a list of
    (k, H, W) matching the images; `probs`, `classes`: (n, k). `boxes`: optional (n, 4)
    ground-truth boxes, normalised (ymin, xmin, ymax, xmax), outlined in green.
    `row_names`: optional (n,) labels (file names) beside each row. Titles follow the
    seed: "<class> - <p>%".
    """
    n, k = probs.shape
    fig, axes = plt.subplots(n, k, figsize=(7 * k / 3, 12 * n / 5),
                             squeeze=False)
    for row in range(n):
        height, width = images[row].shape[:2]
        if row_names is not None:
            axes[row, 0].set_ylabel(str(row_names[row]))
        for rank in range(k):
            ax = axes[row, rank]
            ax.imshow(images[row])
            ax.imshow(maps[row][rank], alpha=alpha, cmap=cmap, vmin=0.0, vmax=1.0,
                      interpolation="bilinear")
            if boxes is not None:
                ymin, xmin, ymax, xmax = boxes[row] * [height, width, height, width]
                ax.add_patch(plt.Rectangle((xmin - 0.5, ymin - 0.5), xmax - xmin, ymax - ymin,
                                           fill=False, edgecolor="lime", linewidth=1.2))
            name = class_names[classes[row, rank]]
            ax.set_title(f"{name} - {100 * probs[row, rank]:.1f}%")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


LABELLED_CLASSES = 40  # more classes (CUB's 200): no counts or names, the size of 40


def confusion_matrix(matrix: np.ndarray, class_names: list[str]) -> Figure:
    """Counts of (true, predicted) classes, (classes, classes), with the count in each cell
    and the class names, for up to LABELLED_CLASSES classes (else colours only)."""
    count = len(class_names)
    side = min(count, LABELLED_CLASSES)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * side, 0.8 + 0.5 * side))
    ax.imshow(matrix, cmap="Blues")
    if count <= LABELLED_CLASSES:
        for (row, col), value in np.ndenumerate(matrix):
            ax.text(col, row, str(value), ha="center", va="center", fontsize=7,
                    color="white" if value > matrix.max() / 2 else "black")
        ax.set_xticks(range(count), class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(count), class_names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.tight_layout()
    return fig


def deletion_insertion_curves(curves: dict[str, dict[str, np.ndarray]]) -> Figure:
    """Mean probability of the class vs fraction of pixels deleted / inserted, per method.

    `curves`: {method: {"deletion": (steps + 1,), "insertion": (steps + 1,)}}; the legend
    gives each curve's area (AUC).
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, kind in zip(axes, ("deletion", "insertion"), strict=True):
        for method, by_kind in curves.items():
            curve = by_kind[kind]
            fraction = np.linspace(0, 1, len(curve))
            ax.plot(fraction, curve, label=f"{method} (AUC {np.trapezoid(curve, fraction):.3f})")
        ax.set_title(f"{kind}: lower is better" if kind == "deletion" else
                     f"{kind}: higher is better")
        ax.set_xlabel(f"fraction of pixels {'removed' if kind == 'deletion' else 'inserted'}")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("probability of the class")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path, dpi: int) -> None:
    """Saves and closes a figure atomically (see runs.atomic_path), then says so."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)
    print(f"saved {path}")


def method_comparison(images: np.ndarray, maps: dict[str, np.ndarray],
                      boxes: np.ndarray | None = None,
                      titles: list[str] | None = None) -> Figure:
    """Rows of images, one column per method: each method's map over the image.

    `images`: (n, H, W, 3) uint8; `maps`: {method: (n, H, W)}, each map drawn scaled to its
    own maximum; `boxes`: optional (n, 4) normalised ground-truth boxes, outlined in green;
    `titles`: optional (n,) row labels (e.g. the class explained).
    """
    n, columns = len(images), len(maps)
    fig, axes = plt.subplots(n, columns + 1, figsize=(1.6 * (columns + 1), 1.7 * n),
                             squeeze=False)
    height, width = images.shape[1:3]
    for row in range(n):
        panels = [("image", None), *maps.items()]
        for column, (name, method_maps) in enumerate(panels):
            ax = axes[row, column]
            ax.imshow(images[row])
            if method_maps is not None:
                peak = max(float(method_maps[row].max()), 1e-12)
                ax.imshow(method_maps[row] / peak, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if boxes is not None:
                ymin, xmin, ymax, xmax = boxes[row] * [height, width, height, width]
                ax.add_patch(plt.Rectangle((xmin - 0.5, ymin - 0.5), xmax - xmin, ymax - ymin,
                                           fill=False, edgecolor="lime", linewidth=1.0))
            if row == 0:
                ax.set_title(name, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        if titles is not None:
            axes[row, 0].set_ylabel(titles[row], fontsize=7)
    fig.tight_layout()
    return fig
