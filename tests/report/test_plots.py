"""The figures: plot functions on small arrays (read back from the Figure objects), saved
files (format and size), and one run per script that writes figures."""

from __future__ import annotations

import json
import re
import struct

import matplotlib.colors
import numpy as np
import pytest

import evaluate_cam
import visualize_cam
from camlab.core import runs
from camlab.errors import CamError
from camlab.report import plots
from camlab.train import training
from helpers import run_fails

NAMES = ["disk", "ell", "tee"]
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-", "svg": b"<?xml"}


def grid_inputs(n: int = 3, k: int = 2, side: int = 8):
    """Images, display maps (a ramp from 0 to 1, cut at 0.3), and each row's ranked classes:
    row 0 ranks disk, ell; row 1 ell, tee; row 2 tee, disk."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    ramp = np.linspace(0, 1, side * side, dtype=np.float32).reshape(side, side)
    maps = np.repeat(np.where(ramp < 0.3, 0, ramp)[None, None], n, 0).repeat(k, 1)
    classes = np.array([[0, 1], [1, 2], [2, 0]])[:n, :k]
    probs = np.tile(np.array([[0.7, 0.2]])[:, :k], (n, 1))
    return images, maps, probs, classes


def titles(fig, n: int, columns: int) -> list[list[tuple[str, str]]]:
    """(text, colour as hex) of each panel's title, row by row."""
    panels = np.array(fig.axes[:n * columns]).reshape(n, columns)
    return [[(ax.get_title(), matplotlib.colors.to_hex(ax.title.get_color())) for ax in row]
            for row in panels]


def test_the_true_label_marks_a_wrong_top1_and_the_true_class():
    images, maps, probs, classes = grid_inputs()
    # Row 0 is right (disk), row 1 is wrong (true tee, ranked second), row 2 is a photo.
    fig = plots.cam_grid(images, maps, probs, classes, NAMES, labels=np.array([0, 2, -1]))
    green, red, black = plots.RIGHT, plots.WRONG, "#000000"
    assert titles(fig, 3, 2) == [
        [("✓ disk - 70.0%", green), ("ell - 20.0%", black)],
        [("✗ ell - 70.0%", red), ("✓ tee - 20.0%", green)],
        [("tee - 70.0%", black), ("disk - 20.0%", black)]]
    rows = [fig.axes[2 * row] for row in range(3)]
    assert [ax.get_ylabel() for ax in rows] == ["true: disk", "true: tee", ""]
    assert [matplotlib.colors.to_hex(ax.yaxis.label.get_color()) for ax in rows] == [
        black, red, black]


def test_the_marks_follow_the_labels_not_the_ranks():
    images, maps, probs, classes = grid_inputs()
    # The same predictions with other labels: row 0 wrong (truth not in the top 2), row 1
    # right; no label at all marks nothing.
    fig = plots.cam_grid(images, maps, probs, classes, NAMES, labels=np.array([2, 1, 0]))
    marks = [[text[:1] for text, _ in row] for row in titles(fig, 3, 2)]
    assert marks == [["✗", "e"], ["✓", "t"], ["✗", "✓"]]
    assert fig.axes[0].get_ylabel() == "true: tee"
    unlabelled = plots.cam_grid(images, maps, probs, classes, NAMES)
    assert all(not text.startswith(("✓", "✗")) and colour == "#000000"
               for row in titles(unlabelled, 3, 2) for text, colour in row)


def test_file_names_and_true_labels_share_the_row_label():
    images, maps, probs, classes = grid_inputs(n=2)
    fig = plots.cam_grid(images, maps, probs, classes, NAMES, labels=np.array([1, -1]),
                         row_names=np.array(["a.png", "b.jpg"]))
    assert [fig.axes[0].get_ylabel(), fig.axes[2].get_ylabel()] == ["a.png\ntrue: ell",
                                                                    "b.jpg"]


def test_title_colorbar_and_the_plain_image_column():
    images, maps, probs, classes = grid_inputs(n=2)
    fig = plots.cam_grid(images, maps, probs, classes, NAMES, threshold=0.3, show_image=True,
                         title="CAM — run demo, layer conv3_2")
    assert fig.get_suptitle() == "CAM — run demo, layer conv3_2"
    assert len(fig.axes) == 2 * 3 + 1  # panels, then the colorbar
    image_column = [fig.axes[0], fig.axes[3]]
    for row, ax in enumerate(image_column):
        (shown,) = ax.get_images()  # the image alone, no heatmap
        np.testing.assert_array_equal(shown.get_array(), images[row])
    assert image_column[0].get_title() == "image"
    assert fig.axes[1].get_title() == "disk - 70.0%"
    colorbar = fig.axes[-1]
    assert colorbar.get_ylabel() == "map / top-1 class map's max (cut below 0.3)"
    (cut,) = colorbar.patches  # the hatched part of the scale that the cut sets to 0
    assert cut.get_hatch() == "///"
    assert (cut.get_y(), cut.get_height()) == (0.0, 0.3)


def test_the_post_style_is_the_seeds_overlay():
    images, maps, probs, classes = grid_inputs(n=1, k=1)
    fig = plots.cam_grid(images, maps, probs, classes, NAMES)
    photo, heat = fig.axes[0].get_images()
    np.testing.assert_array_equal(photo.get_array(), images[0])
    np.testing.assert_array_equal(heat.get_array(), maps[0, 0])
    assert heat.get_cmap().name == "magma_r" and heat.get_alpha() == 0.3
    assert heat.get_clim() == (0.0, 1.0)


def test_the_contrast_style_greys_the_photo_and_fades_the_cut_in():
    images, maps, probs, classes = grid_inputs(n=1, k=1)
    style = plots.resolve_style("contrast")
    fig = plots.cam_grid(images, maps, probs, classes, NAMES, style=style, threshold=0.3)
    photo, heat = fig.axes[0].get_images()
    underlay = photo.get_array()
    assert (underlay[..., 0] == underlay[..., 1]).all() and (
        underlay[..., 1] == underlay[..., 2]).all()
    assert underlay.min() >= 90  # lightened: a dark photo cannot hide the map
    rgba, cam = heat.get_array(), maps[0, 0]
    np.testing.assert_array_equal(rgba[..., :3],
                                  matplotlib.colormaps["turbo"](cam)[..., :3])
    opacity = rgba[..., 3]
    assert (opacity[cam < 0.3] == 0).all()  # the cut part is transparent
    assert opacity.max() == pytest.approx(0.6)
    inside = cam >= 0.3  # and fades in: rising with the map, with values in between
    order = np.argsort(cam[inside])
    assert (np.diff(opacity[inside][order]) >= 0).all()
    assert ((opacity > 0.05) & (opacity < 0.55)).any()


@pytest.mark.parametrize("style, cmap, alpha, expected", [
    ("post", "", -1.0, ("magma_r", 0.3)), ("contrast", "", -1.0, ("turbo", 0.6)),
    ("contrast", "viridis", 0.4, ("viridis", 0.4)), ("post", "", 0.0, ("magma_r", 0.0))])
def test_a_style_gives_colormap_and_opacity_unless_set(style, cmap, alpha, expected):
    chosen = plots.resolve_style(style, cmap, alpha)
    assert (chosen.cmap, chosen.alpha) == expected


@pytest.mark.parametrize("args, message", [
    (("bold",), "STYLE='bold'; choose one of post, contrast"),
    (("post", "magmar"), "CMAP='magmar' is not a matplotlib colormap"),
    (("post", "", 1.5), "ALPHA=1.5 must be between 0 and 1, or -1 for the STYLE's")])
def test_a_bad_style_setting_is_named(args, message):
    with pytest.raises(CamError, match=re.escape(message)):
        plots.resolve_style(*args)


def confusion_texts(fig) -> list[str]:
    return [text.get_text() for text in fig.axes[0].texts]


def test_confusion_matrix_title_counts_and_row_shares():
    matrix = np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]])
    fig = plots.confusion_matrix(matrix, NAMES, "run demo, validation split")
    assert fig.axes[0].get_title() == "run demo, validation split: 8 images, accuracy 87.5%"
    assert confusion_texts(fig) == ["3", "1", "0", "0", "4", "0", "0", "0", "0"]
    assert fig.axes[1].get_ylabel() == "images"  # the colorbar
    assert fig.axes[0].get_images()[0].get_clim() == (0, 4)
    shares = plots.confusion_matrix(matrix, NAMES, normalise=True)
    assert confusion_texts(shares) == ["0.75", "0.25", "0.00", "0.00", "1.00", "0.00",
                                       "-", "-", "-"]  # no tee among the true classes
    assert shares.axes[0].get_title() == "8 images, accuracy 87.5%"
    assert shares.axes[1].get_ylabel() == "share of the true class's images"
    assert shares.axes[0].get_images()[0].get_clim() == (0, 1)


def test_deletion_insertion_shows_count_class_and_the_spread_over_images():
    rng = np.random.default_rng(1)
    curves = {name: {kind: rng.uniform(0, 1, (7, 5)) for kind in ("deletion", "insertion")}
              for name in ("cam", "centre")}
    fig = plots.deletion_insertion_curves(curves, "CAM, run demo, validation split", "true")
    assert fig.get_suptitle() == ("CAM, run demo, validation split - 7 images, mean curve, "
                                  "probability of each image's true class")
    assert fig.axes[0].get_ylabel() == "probability of the true class"
    for ax, kind in zip(fig.axes, ("deletion", "insertion"), strict=True):
        for line, band, name in zip(ax.lines, ax.collections, curves, strict=True):
            per_image = curves[name][kind]
            np.testing.assert_allclose(line.get_ydata(), per_image.mean(axis=0))
            heights = band.get_paths()[0].vertices[:, 1]
            low, high = np.percentile(per_image, [25, 75], axis=0)
            np.testing.assert_allclose([heights.min(), heights.max()],
                                       [low.min(), high.max()])
            auc = np.trapezoid(per_image.mean(axis=0), dx=0.25)
            assert line.get_label() == f"{name} (AUC {auc:.3f})"
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert legend[-1] == "25th-75th percentile of images"


def write_history(path, rows, keep_rows):
    """history.csv as train_cam.py writes it: an EpochHistory fed (epoch, logs) rows."""
    history = training.EpochHistory(path, keep_rows=keep_rows)
    for epoch, accuracy in rows:
        history.on_epoch_end(epoch - 1, {"loss": 2.0 / epoch, "accuracy": accuracy / 2,
                                         "val_loss": 2.5 / epoch, "val_accuracy": accuracy})


@pytest.mark.parametrize("keep, expected", [("last", 4), ("best", 2)])
def test_training_curves_of_a_resumed_run_mark_the_kept_epoch(tmp_path, keep, expected):
    path = tmp_path / "history.csv"
    write_history(path, [(1, 0.3), (2, 0.8), (3, 0.5)], keep_rows=False)
    # Killed during epoch 3, resumed: epoch 3 runs again and replaces its row.
    write_history(path, [(3, 0.6), (4, 0.7)], keep_rows=True)
    history = runs.read_history(path)
    np.testing.assert_array_equal(history["epoch"], [1, 2, 3, 4])
    np.testing.assert_allclose(history["val_accuracy"], [0.3, 0.8, 0.6, 0.7])
    if keep == "best":  # the epoch KEEP="best" keeps when resuming
        assert training.best_epoch(path)["epoch"] == expected
    fig = plots.training_curves(history, keep, training.MONITOR, "train[:10%]", "run x")
    assert fig.get_suptitle() == "run x"
    for ax, metric in zip(fig.axes, ("loss", "accuracy"), strict=True):
        train, measured, kept = ax.lines
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4])
        np.testing.assert_allclose(train.get_ydata(), history[metric])
        np.testing.assert_allclose(measured.get_ydata(), history[f"val_{metric}"])
        assert (train.get_label(), measured.get_label()) == ("training batches",
                                                             "train[:10%]")
        assert list(kept.get_xdata()) == [expected, expected]
        assert kept.get_label() == f"kept: epoch {expected} ({keep})"


def test_training_curves_without_a_finished_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n")
    assert runs.read_history(path) == {}
    fig = plots.training_curves({}, "last")
    assert [text.get_text() for text in fig.texts] == ["no finished epoch in history.csv"]


def image_size(path) -> tuple[float, float]:
    """(width, height) as the file states it: pixels (png) or points (pdf, svg)."""
    data = path.read_bytes()
    if data.startswith(MAGIC["png"]):
        return struct.unpack(">II", data[16:24])
    if data.startswith(MAGIC["pdf"]):
        box = re.search(rb"/MediaBox \[ *([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) *\]", data)
        return float(box[3]) - float(box[1]), float(box[4]) - float(box[2])
    svg = re.search(rb'<svg[^>]*width="([\d.]+)pt" height="([\d.]+)pt"', data)
    return float(svg[1]), float(svg[2])


def expected_size(fig, kind: str, dpi: int) -> tuple[float, float]:
    """Pixels (figure inches x dpi) for png; points (inches x 72) for pdf and svg."""
    width, height = fig.get_size_inches()
    scale = dpi if kind == "png" else 72
    return round(width * scale), round(height * scale)


@pytest.mark.parametrize("kind", plots.FORMATS)
def test_saved_figures_have_their_format_and_size(tmp_path, kind):
    images, maps, probs, classes = grid_inputs(n=2)
    fig = plots.cam_grid(images, maps, probs, classes, NAMES, labels=np.array([0, 1]))
    size = expected_size(fig, kind, 20)
    # 2 rows x 2 panels: (7 * 2 / 3 + 1) x (12 * 2 / 5 + 0.4) inches
    assert size == ((113, 104) if kind == "png" else (408, 374))
    path = tmp_path / f"grid.{kind}"
    plots.save_figure(fig, path, 20)
    assert path.read_bytes().startswith(MAGIC[kind])
    assert image_size(path) == pytest.approx(size, abs=0.5)
    if kind != "png":  # no creation date inside: the same figure gives the same bytes
        again = tmp_path / f"again.{kind}"
        plots.save_figure(plots.cam_grid(images, maps, probs, classes, NAMES,
                                         labels=np.array([0, 1])), again, 20)
        assert again.read_bytes() == path.read_bytes()


def test_a_figure_path_needs_a_known_format(tmp_path):
    images, maps, probs, classes = grid_inputs(n=1, k=1)
    with pytest.raises(ValueError, match="not 'jpg'"):
        plots.save_figure(plots.cam_grid(images, maps, probs, classes, NAMES),
                          tmp_path / "grid.jpg", 20)
    assert not list(tmp_path.iterdir())


def test_visualize_draws_the_marked_grid_as_pdf(demo_run, saved_figures, capsys):
    root, run_dir = demo_run
    path = visualize_cam.main(["--PRESET=demo", f"--OUTPUT_DIR={root}", "--DPI=20",
                               "--NUM_IMAGES=4", "--TOP_K=2", "--FORMAT=pdf",
                               "--SHOW_IMAGE", "--STYLE=contrast"])
    assert path == run_dir / "heatmaps.pdf"
    (fig,) = saved_figures
    assert path.read_bytes().startswith(MAGIC["pdf"])
    assert image_size(path) == pytest.approx(expected_size(fig, "pdf", 20), abs=0.5)
    saved = np.load(run_dir / "cams.npz")
    names, labels = list(saved["class_names"]), saved["labels"]
    layer = re.search(r"maps of layer (\S+)", capsys.readouterr().out)[1]
    assert fig.get_suptitle() == f"CAM — run demo, layer {layer}, validation split"
    for row, (image_title, *ranked) in enumerate(titles(fig, 4, 3)):
        assert image_title[0] == ("image" if row == 0 else "")
        order = np.argsort(-saved["probs"][row])[:2]
        for rank, (text, colour) in enumerate(ranked):
            mark = ("✓ " if order[rank] == labels[row] else
                    "✗ " if rank == 0 else "")
            probability = 100 * saved["probs"][row, order[rank]]
            assert text == f"{mark}{names[order[rank]]} - {probability:.1f}%"
            assert colour == {"✓ ": plots.RIGHT, "✗ ": plots.WRONG, "": "#000000"}[mark]
        assert fig.axes[3 * row].get_ylabel() == f"true: {names[labels[row]]}"


def test_evaluate_writes_titled_figures_as_svg(demo_run, saved_figures):
    root, run_dir = demo_run
    path = evaluate_cam.main(["--RUN_NAME=demo", f"--OUTPUT_DIR={root}", "--MAX_IMAGES=12",
                              "--BATCH_SIZE=12", "--STEPS=2", "--FORMAT=svg",
                              "--CONFUSION=rows"])
    results = json.loads(path.read_text())
    confusion, curves = saved_figures
    for fig, name in ((confusion, "confusion_matrix_first12"),
                      (curves, "deletion_insertion_first12")):
        file = run_dir / f"{name}.svg"
        assert file.read_bytes().startswith(MAGIC["svg"]) and b"<svg" in file.read_bytes()
        assert image_size(file) == pytest.approx(expected_size(fig, "svg", 150), abs=0.5)
    accuracy = 100 * results["accuracy"]
    assert confusion.axes[0].get_title() == (f"run demo, validation split: 12 images, "
                                             f"accuracy {accuracy:.1f}%")
    matrix = np.array(results["confusion_matrix"])
    texts = confusion_texts(confusion)
    for (row, col), count in np.ndenumerate(matrix):
        share = count / matrix[row].sum() if matrix[row].sum() else None
        assert texts[row * len(matrix) + col] == ("-" if share is None else f"{share:.2f}")
    assert curves.get_suptitle().startswith("CAM, run demo, validation split - 12 images")
    assert "predicted class" in curves.get_suptitle()


def test_train_draws_its_curves(trained_run):
    _, run_dir = trained_run
    path = run_dir / "curves.png"
    assert path.read_bytes().startswith(MAGIC["png"])
    assert image_size(path) == (9 * 150, round(3.6 * 150))  # figure inches x 150 dpi


@pytest.mark.parametrize("script", [visualize_cam, evaluate_cam])
def test_a_bad_format_is_one_line(small_run, script):
    output_dir, run_dir = small_run
    run_fails(script.main, [f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock",
                            "--FORMAT=jpg"], run_dir, "FORMAT='jpg'; choose one of png, pdf, svg")
