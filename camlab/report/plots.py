"""Drawing: turns images, display maps (computed in cam_utils) and scores into figures.

Every function returns its matplotlib Figure, so tests read titles, colours and drawn
arrays from it; `save_figure` writes it as png, pdf or svg.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

# Scripts write files: no window, no display needed. A caller that chose a backend (a
# notebook's inline one, or pyplot already in use) keeps it.
if "MPLBACKEND" not in os.environ and "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from camlab.core.runs import atomic_path  # noqa: E402
from camlab.errors import CamError, check_choice  # noqa: E402

FORMATS = ("png", "pdf", "svg")
RIGHT, WRONG = "#1a7f37", "#cf222e"  # title colours: the true class, a wrong top-1


@dataclass(frozen=True)
class Style:
    """How maps are drawn over their images.

    "post" is the post's look: the colour photo under the colormap at `alpha`, the
    cut part of the map drawn as the colormap's 0. "contrast" draws the photo in light
    grey so that the heatmap is the only colour, and fades the map in over `soft_edge`
    above the cut instead of a hard edge.
    """

    cmap: str
    alpha: float
    grey_image: bool
    soft_edge: float  # width of the fade above the cut, in map units; 0 = hard edge


STYLES = {"post": Style("magma_r", 0.3, grey_image=False, soft_edge=0.0),
          "contrast": Style("turbo", 0.6, grey_image=True, soft_edge=0.2)}


def resolve_style(style: str, cmap: str = "", alpha: float = -1.0) -> Style:
    """STYLE with the user's CMAP ("" = the style's) and ALPHA (-1 = the style's).

    Raises CamError naming the setting for an unknown style or colormap, or an
    opacity outside 0 to 1.
    """
    base = STYLES[check_choice("STYLE", style, STYLES)]
    if cmap and cmap not in matplotlib.colormaps:
        raise CamError(f"CMAP={cmap!r} is not a matplotlib colormap; try magma_r, turbo, "
                       "inferno or viridis (all: matplotlib.pyplot.colormaps())")
    if alpha != -1.0 and not 0.0 <= alpha <= 1.0:
        raise CamError(f"ALPHA={alpha} must be between 0 and 1, or -1 for the STYLE's")
    return Style(cmap or base.cmap, base.alpha if alpha == -1.0 else alpha,
                 base.grey_image, base.soft_edge)


def grey(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the same shape, its luminance (ITU-R BT.601) lightened to
    [90, 255] so that dark photos do not hide the heatmap."""
    luminance = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lightened = 90 + luminance * (165 / 255)
    return np.repeat(np.round(lightened).astype(np.uint8)[..., None], 3, axis=-1)


def heat_layer(cam: np.ndarray, style: Style, threshold: float) -> np.ndarray:
    """(H, W) map in [0, 1] -> (H, W, 4) RGBA float in [0, 1] as `style` draws it.

    The opacity is `style.alpha` everywhere for a hard edge; with a soft edge it rises
    from 0 at `threshold` to `style.alpha` at `threshold + soft_edge`, so the cut part
    is transparent.
    """
    rgba = matplotlib.colormaps[style.cmap](np.clip(cam, 0.0, 1.0))
    if style.soft_edge > 0:
        rgba[..., 3] = style.alpha * np.clip((cam - threshold) / style.soft_edge, 0.0, 1.0)
    else:
        rgba[..., 3] = style.alpha
    return rgba


def overlay(image: np.ndarray, shown: np.ndarray, style: Style, threshold: float
            ) -> np.ndarray:
    """(H, W, 3) uint8: a panel of cam_grid as one picture, the (H, W) display map `shown`
    (in [0, 1], cut at `threshold`: cam_utils.display_maps) coloured by heat_layer and
    blended over `image` (H, W, 3) uint8, or over its grey for a grey_image style."""
    base = (grey(image) if style.grey_image else image).astype(np.float32)
    heat = heat_layer(shown, style, threshold)
    opacity = heat[..., 3:]
    blended = base * (1.0 - opacity) + 255.0 * heat[..., :3] * opacity
    return np.round(blended).clip(0, 255).astype(np.uint8)


def panel_title(ax, name: str, prob: float, mark: str) -> None:
    """"<class> - <p>%" as in the post; `mark` "right" (the true class: green, ✓), "wrong"
    (a wrong top-1: red, ✗) or "" (black)."""
    prefix, colour = {"right": ("✓ ", RIGHT), "wrong": ("✗ ", WRONG), "": ("", "black")}[mark]
    ax.set_title(f"{prefix}{name} - {100 * prob:.1f}%", color=colour)


def map_colorbar(fig: Figure, axes, style: Style, threshold: float) -> None:
    """The shared colorbar: what a map value means after cam_utils.display_maps (each map
    divided by the top-1 class map's maximum, then cut), with the cut part hatched."""
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), style.cmap), ax=axes,
                       alpha=style.alpha, shrink=min(1.0, 3.0 / len(axes)), aspect=30)
    bar.ax.axhspan(0.0, threshold, facecolor="white", edgecolor="grey", hatch="///",
                   linewidth=0)
    bar.set_label(f"map / top-1 class map's max (cut below {threshold:g})")


def cam_grid(images, maps, probs: np.ndarray, classes: np.ndarray, class_names: list[str],
             *, labels: np.ndarray | None = None, style: Style = STYLES["post"],
             threshold: float = 0.3, show_image: bool = False, title: str = "",
             boxes: np.ndarray | None = None, row_names=None) -> Figure:
    """A rows = images, columns = ranks grid of maps drawn over their images.

    `images`: (n, H, W, 3) uint8 RGB, or a list of n such images of different sizes;
    `maps`: (n, k, H, W) in [0, 1] as cam_utils.display_maps returns them (cut at
    `threshold`), or a list of (k, H, W) matching the images; `probs`, `classes`: (n, k).
    `labels`: optional (n,) true classes, -1 where unknown (a user's photo): the panel of
    the true class gets a green ✓ title, a wrong top-1 a red ✗, and each row "true:
    <class>" beside it. `boxes`: optional (n, 4) ground-truth boxes, normalised (ymin,
    xmin, ymax, xmax), outlined in green. `row_names`: optional (n,) file names.
    `show_image` adds a first column with the plain image. The panels are fig.axes[:n *
    columns], row by row; the colorbar's axes come last.
    """
    n, k = probs.shape
    first = int(show_image)
    fig, axes = plt.subplots(n, k + first, figsize=(7 * (k + first) / 3 + 1.0, 12 * n / 5 + 0.4),
                             squeeze=False, layout="constrained")
    for row in range(n):
        image = grey(images[row]) if style.grey_image else images[row]
        label = -1 if labels is None else int(labels[row])
        if show_image:
            axes[row, 0].imshow(images[row])
            if row == 0:
                axes[row, 0].set_title("image")
        for rank in range(k):
            ax = axes[row, first + rank]
            ax.imshow(image)
            if style.grey_image or style.soft_edge:
                ax.imshow(heat_layer(maps[row][rank], style, threshold), interpolation="bilinear")
            else:  # the post's call, kept as it was
                ax.imshow(maps[row][rank], alpha=style.alpha, cmap=style.cmap, vmin=0.0,
                          vmax=1.0, interpolation="bilinear")
            if boxes is not None:
                outline_box(ax, boxes[row], images[row].shape[:2], 1.2)
            shown = int(classes[row, rank])
            mark = ("right" if shown == label else "wrong" if rank == 0 and label >= 0
                    else "")
            panel_title(ax, class_names[shown], float(probs[row, rank]), mark)
        row_label = [] if row_names is None else [str(row_names[row])]
        if label >= 0:
            row_label.append(f"true: {class_names[label]}")
        axes[row, 0].set_ylabel("\n".join(row_label),
                                color=WRONG if 0 <= label != classes[row, 0] else "black")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    map_colorbar(fig, axes[:, first:].ravel().tolist(), style, threshold)
    if title:
        fig.suptitle(title)
    return fig


def outline_box(ax, box: np.ndarray, shape: tuple[int, int], width: float) -> None:
    """Outlines a normalised (ymin, xmin, ymax, xmax) box in green on an (H, W) image."""
    height, width_px = shape
    ymin, xmin, ymax, xmax = box * [height, width_px, height, width_px]
    ax.add_patch(plt.Rectangle((xmin - 0.5, ymin - 0.5), xmax - xmin, ymax - ymin,
                               fill=False, edgecolor="lime", linewidth=width))


LABELLED_CLASSES = 40  # more classes (CUB's 200): no counts or names, the size of 40


def confusion_matrix(matrix: np.ndarray, class_names: list[str], title: str = "",
                     normalise: bool = False) -> Figure:
    """(true, predicted) counts, (classes, classes), a value in each cell and the class
    names for up to LABELLED_CLASSES classes (else colours only).

    The title adds the number of images and the accuracy (the diagonal's share) to
    `title`. `normalise` shows each true class's row as shares of its images (a row
    without images shows "-"); the colorbar says which.
    """
    matrix = np.asarray(matrix)
    count, total = len(class_names), int(matrix.sum())
    rows = matrix.sum(axis=1, keepdims=True)
    values = (np.divide(matrix, rows, out=np.full(matrix.shape, np.nan), where=rows > 0)
              if normalise else matrix)
    top = 1.0 if normalise else max(int(matrix.max()), 1)
    side = min(count, LABELLED_CLASSES)
    fig, ax = plt.subplots(figsize=(2.0 + 0.55 * side, 1.2 + 0.5 * side),
                           layout="constrained")
    shown = ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
    if count <= LABELLED_CLASSES:
        for (row, col), value in np.ndenumerate(values):
            text = "-" if np.isnan(value) else f"{value:.2f}" if normalise else str(int(value))
            ax.text(col, row, text, ha="center", va="center", fontsize=7,
                    color="white" if value > top / 2 else "black")
        ax.set_xticks(range(count), class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(count), class_names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(shown, ax=ax, label="share of the true class's images" if normalise
                 else "images")
    accuracy = np.trace(matrix) / max(total, 1)
    ax.set_title(f"{title + ': ' if title else ''}{total} images, accuracy "
                 f"{100 * accuracy:.1f}%", fontsize=9)
    return fig


def deletion_insertion_curves(curves: dict[str, dict[str, np.ndarray]], title: str = "",
                              target: str = "predicted") -> Figure:
    """Probability of the tracked class vs fraction of pixels deleted / inserted.

    `curves`: {method: {"deletion": (images, steps + 1), "insertion": (images, steps +
    1)}}, one curve per image, the probability of the `target` class ("predicted" or
    "true"). Each method's mean curve is drawn with its area (AUC, the mean of the
    images' AUCs) in the legend and a band from the 25th to the 75th percentile over
    images. The title adds the image count and the class tracked to `title`.
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.9), sharey=True, layout="constrained")
    count = len(next(iter(curves.values()))["deletion"])
    for ax, kind in zip(axes, ("deletion", "insertion"), strict=True):
        for method, by_kind in curves.items():
            per_image = np.asarray(by_kind[kind])
            fraction = np.linspace(0, 1, per_image.shape[1])
            mean = per_image.mean(axis=0)
            (line,) = ax.plot(fraction, mean,
                              label=f"{method} (AUC {np.trapezoid(mean, fraction):.3f})")
            low, high = np.percentile(per_image, [25, 75], axis=0)
            ax.fill_between(fraction, low, high, color=line.get_color(), alpha=0.15,
                            linewidth=0)
        handles, _ = ax.get_legend_handles_labels()
        band = Patch(color="grey", alpha=0.3, label="25th-75th percentile of images")
        ax.legend(handles=[*handles, band], fontsize=8)
        ax.set_title(f"{kind}: lower is better" if kind == "deletion" else
                     f"{kind}: higher is better")
        ax.set_xlabel(f"fraction of pixels {'removed' if kind == 'deletion' else 'inserted'}")
    axes[0].set_ylabel(f"probability of the {target} class")
    fig.suptitle(f"{title + ' - ' if title else ''}{count} images, mean curve, "
                 f"probability of each image's {target} class", fontsize=10)
    return fig


def kept_epoch(history: dict[str, np.ndarray], keep: str, monitor: str) -> int:
    """The epoch whose weights a run keeps (training.KeptWeights): the last, or the first
    with the highest `monitor`."""
    if keep == "last":
        return int(history["epoch"][-1])
    return int(history["epoch"][int(np.argmax(history[monitor]))])


def training_curves(history: dict[str, np.ndarray], keep: str, monitor: str = "val_accuracy",
                    measured_on: str = "validation", title: str = "") -> Figure:
    """Loss and accuracy per epoch, on the training batches and on `measured_on`, with the
    kept epoch (KEEP "last" or "best" by `monitor`) marked by a dashed line.

    `history`: runs.read_history's columns ("epoch", "loss", "accuracy", "val_loss",
    "val_accuracy"); a history without rows gives a figure that says so.
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    if title:
        fig.suptitle(title, fontsize=10)
    if not history:
        fig.text(0.5, 0.5, "no finished epoch in history.csv", ha="center")
        return fig
    epochs, kept = history["epoch"], kept_epoch(history, keep, monitor)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, label in ((metric, "training batches"), (f"val_{metric}", measured_on)):
            if key in history:
                ax.plot(epochs, history[key], "o-", markersize=3, label=label)
        ax.axvline(kept, color="grey", linestyle="--", linewidth=1,
                   label=f"kept: epoch {kept} ({keep})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    return fig


def save_figure(fig: Figure, path, dpi: int) -> None:
    """Saves and closes a figure atomically (see runs.atomic_path), then says so.

    The format is the path's suffix, one of FORMATS. PDF and SVG are written without
    their creation date, and SVG with fixed element ids, so the same figure gives the
    same bytes.
    """
    kind = Path(path).suffix.lstrip(".")
    if kind not in FORMATS:
        raise ValueError(f"{path}: a figure is saved as {', '.join(FORMATS)}, not {kind!r}")
    metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(kind)
    with atomic_path(path) as tmp, matplotlib.rc_context({"svg.hashsalt": "camlab"}):
        fig.savefig(tmp, dpi=dpi, format=kind, metadata=metadata)
    plt.close(fig)
    print(f"saved {path}")


OUTLINE_COLOURS = ("lime", "magenta", "white")  # of method_comparison's outlines, in order


def method_comparison(images: np.ndarray, maps: dict[str, np.ndarray],
                      boxes: np.ndarray | None = None,
                      titles: list[str] | None = None,
                      outlines: dict[str, np.ndarray] | None = None) -> Figure:
    """Rows of images, one column per method: each method's map over the image.

    `images`: (n, H, W, 3) uint8; `maps`: {method: (n, H, W)}, each map drawn scaled to its
    own maximum; `boxes`: optional (n, 4) normalised ground-truth boxes, outlined in green;
    `titles`: optional (n,) row labels (e.g. the class explained); `outlines`: optional
    {name: (n, H, W) bool masks} (the cause and the distractor), each mask's outline drawn
    in OUTLINE_COLOURS' colour of its place and named in the first panel's title.
    """
    n, columns = len(images), len(maps)
    fig, axes = plt.subplots(n, columns + 1, figsize=(1.6 * (columns + 1), 1.7 * n),
                             squeeze=False)
    for row in range(n):
        panels = [("image", None), *maps.items()]
        for column, (name, method_maps) in enumerate(panels):
            ax = axes[row, column]
            ax.imshow(images[row])
            if method_maps is not None:
                peak = max(float(method_maps[row].max()), 1e-12)
                ax.imshow(method_maps[row] / peak, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if boxes is not None:
                outline_box(ax, boxes[row], images.shape[1:3], 1.0)
            for colour, masks in zip(OUTLINE_COLOURS, (outlines or {}).values(), strict=False):
                ax.contour(masks[row].astype(float), levels=[0.5], colors=colour,
                           linewidths=0.8)
            if row == 0:
                named = " / ".join(f"{key}: {colour}" for key, colour in zip(
                    outlines or {}, OUTLINE_COLOURS, strict=False))
                ax.set_title(f"{name}\n{named}" if column == 0 and named else name,
                             fontsize=8 if column or not named else 6)
            ax.set_xticks([])
            ax.set_yticks([])
        if titles is not None:
            axes[row, 0].set_ylabel(titles[row], fontsize=7)
    fig.tight_layout()
    return fig
