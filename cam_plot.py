"""Drawing: turns images and display maps (computed in cam_utils) into the seed's grid."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # scripts write files; no window, no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cam_config import atomic_path  # noqa: E402


def cam_grid(images: np.ndarray, maps: np.ndarray, probs: np.ndarray, classes: np.ndarray,
             class_names: list[str], alpha: float = 0.3, cmap: str = "magma_r",
             boxes: np.ndarray | None = None) -> Figure:
    """A rows = images, columns = ranks grid of maps drawn over their images.

    `images`: (n, H, W, 3) uint8 RGB; `maps`: (n, H, W, k) in [0, 1] (values above 1 are
    clipped by vmax); `probs`, `classes`: (n, k). `boxes`: optional (n, 4) ground-truth
    boxes, normalised (ymin, xmin, ymax, xmax), outlined in green. Titles follow the seed:
    "<class> - <p>%".
    """
    n, k = probs.shape
    fig, axes = plt.subplots(n, k, sharex=True, sharey=True, figsize=(7 * k / 3, 12 * n / 5),
                             squeeze=False)
    height, width = images.shape[1:3]
    for row in range(n):
        for rank in range(k):
            ax = axes[row, rank]
            ax.imshow(images[row])
            ax.imshow(maps[row, ..., rank], alpha=alpha, cmap=cmap, vmin=0.0, vmax=1.0,
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


def save_figure(fig: Figure, path, dpi: int) -> None:
    """Saves and closes a figure atomically (see cam_config.atomic_path), then says so."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)
    print(f"saved {path}")
