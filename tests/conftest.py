"""Fixtures: everything offline, small, and seeded. Plain helpers are in helpers.py."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import pytest  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from camlab.datasets import data, shapes  # noqa: E402
from camlab.report import plots  # noqa: E402
from camlab.train import precision  # noqa: E402
from helpers import (  # noqa: E402
    QUICK_TRAINING,
    make_imagenette_archive,
    write_applications_h5,
    write_png,
)


@contextlib.contextmanager
def mocked_imagenette():
    """tfds' mock data for imagenette: random images, real label names, no download.

    mock_data turns download_and_prepare into a no-op; the download-host probe would
    still (rightly) report the network as unreachable, so it is answered here.
    """
    with pytest.MonkeyPatch.context() as patch, tfds.testing.mock_data(num_examples=12):
        patch.setattr(data, "host_reachable", lambda *args, **kwargs: True)
        yield


@pytest.fixture
def mock_imagenette():
    """mocked_imagenette() for one test (per test, so that it never covers a fixture that
    builds the demo's real data)."""
    with mocked_imagenette():
        yield


@pytest.fixture(scope="session", autouse=True)
def no_user_cache(tmp_path_factory):
    """Every test's cache folder ($XDG_CACHE_HOME) is a temporary one, never ~/.cache:
    a MIXED_PRECISION="auto" run would otherwise leave timings in the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def bfloat16_cpu(tmp_path, monkeypatch):
    """A CPU named "Test CPU 9000" with bfloat16 units and no GPU, an empty cache folder;
    returns the cache file camlab.train.precision will use."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    devices = precision.tf.config.list_physical_devices
    monkeypatch.setattr(precision.tf.config, "list_physical_devices",
                        lambda kind=None: [] if kind == "GPU" else devices(kind))
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: True)
    monkeypatch.setattr(precision, "cpu_model", lambda: "Test CPU 9000")
    return tmp_path / "cache" / "cam_lab" / "precision.json"


@pytest.fixture
def fake_timing(monkeypatch):
    """Replaces the timed training steps: `fake_timing(float32=..., mixed_bfloat16=...)`
    sets the images/s each policy "trains" at; returns the list of calls, each
    (policy, backbone, image_size, num_classes, batch_size)."""
    calls, speeds = [], {}

    def timed(policy, backbone, image_size, num_classes, batch_size):
        calls.append((policy, backbone, image_size, num_classes, batch_size))
        return speeds[policy]

    def set_speeds(**images_per_s):
        speeds.update(images_per_s)
        return calls

    monkeypatch.setattr(precision, "training_throughput", timed)
    return set_speeds


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """(output_dir, run_dir) of a one-epoch run on mock imagenette, once per test session.

    Tests that read the run's split again need the mock_imagenette fixture as well.
    """
    import train_cam

    output_dir = tmp_path_factory.mktemp("outputs")
    with mocked_imagenette():
        run_dir = train_cam.main([*QUICK_TRAINING, f"--OUTPUT_DIR={output_dir}",
                                  "--RUN_NAME=mock"])
    return output_dir, run_dir


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """(output_dir, run_dir): trained_run's one epoch on mock imagenette with small_vgg in
    place of VGG19, for tests about run folders and scripts rather than the default
    backbone. Its files are about 1 MB; VGG19's model.keras and weights.weights.h5 are
    240 MB each (with the optimizer's state), which a test that copies the folder, or
    snapshots it to show a failed command changed nothing, reads whole.

    Tests that read the run's split again need the mock_imagenette fixture as well.
    """
    import train_cam

    output_dir = tmp_path_factory.mktemp("small")
    with mocked_imagenette():
        run_dir = train_cam.main([*QUICK_TRAINING, "--BACKBONE=small_vgg",
                                  f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock"])
    return output_dir, run_dir


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """(root, run_dir): one short epoch of the demo preset on 300 / 60 generated images,
    once per test session. The prepared data is in root / "data"."""
    import train_cam

    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shapes, "TRAIN_SIZE", 300)
        patch.setattr(shapes, "VALIDATION_SIZE", 60)
        run_dir = train_cam.main(["--PRESET=demo", "--EPOCHS=1", f"--DATA_DIR={root / 'data'}",
                                  f"--OUTPUT_DIR={root}", "--MIXED_PRECISION=float32"])
    return root, run_dir


@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib figures scripts save during a test, in order (they are still saved)."""
    figures = []
    original = plots.save_figure
    monkeypatch.setattr(plots, "save_figure",
                        lambda fig, *args: (figures.append(fig), original(fig, *args)))
    return figures


DRAFT_DPI = 20  # dots per inch: the most draft_figures lets a script save at


@pytest.fixture
def draft_figures(monkeypatch):
    """Scripts save their figures at DRAFT_DPI at most: for tests that read a figure's
    content (saved_figures) or only that its file is written, never its pixels.
    evaluate_cam.py saves at 150 dpi; the confusion matrix of CUB's 200 classes (24 inches
    wide) took 5-7 s to save there and 1.3 s at 20 dpi (measured on a loaded 2-core machine).
    """
    original = plots.save_figure
    monkeypatch.setattr(plots, "save_figure",
                        lambda fig, path, dpi: original(fig, path, min(dpi, DRAFT_DPI)))


@pytest.fixture
def image_files(tmp_path):
    """Image files of every kind a user may pass, by name, and two unreadable ones."""
    files = {}
    rgb = np.zeros((40, 30, 3), np.uint8)
    rgb[..., 0] = 200
    files["rgb"] = write_png(tmp_path / "rgb.png", rgb)
    files["gray"] = write_png(tmp_path / "gray.png", np.full((20, 20, 1), 128, np.uint8))
    rgba = np.zeros((20, 20, 4), np.uint8)  # black but fully transparent: white over white
    files["rgba"] = write_png(tmp_path / "rgba.png", rgba)
    files["deep"] = write_png(tmp_path / "deep.png", np.full((20, 20, 3), 65535, np.uint16))
    PIL.Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=95)
    files["jpeg"] = tmp_path / "photo.jpg"
    files["text"] = tmp_path / "notes.png"
    files["text"].write_text("not an image")
    files["truncated"] = tmp_path / "truncated.png"
    files["truncated"].write_bytes(files["rgb"].read_bytes()[:60])
    return files


@pytest.fixture
def network_calls(monkeypatch):
    """Refuses every internet connection and records the attempts (tests assert none)."""
    calls = []
    connect = socket.socket.connect

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError(errno.ENETUNREACH, "network disabled in this test")

    def local_only(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            refuse(address)
        return connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", local_only)
    return calls


@pytest.fixture
def probes(monkeypatch):
    """Download hosts camlab.datasets.data probed; the probe answers "unreachable"."""
    hosts = []
    monkeypatch.setattr(data, "host_reachable",
                        lambda host, *args, **kwargs: hosts.append(host) or False)
    return hosts


@pytest.fixture
def manual_archive(tmp_path):
    """(data_dir, archive): a small imagenette-320.tgz where the README tells users to put it."""
    manual_dir = tmp_path / "data" / "downloads" / "manual"
    manual_dir.mkdir(parents=True)
    return tmp_path / "data", make_imagenette_archive(manual_dir / "imagenette-320.tgz")


@pytest.fixture(scope="session")
def weight_files(tmp_path_factory):
    """{"vgg19": (file, model), "vgg16": (file, model), "truncated": (file, None)}: no-top
    weights at 32 px in the keras-applications layout."""
    import keras

    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name, architecture in (("vgg19", keras.applications.VGG19),
                               ("vgg16", keras.applications.VGG16)):
        model = architecture(include_top=False, weights=None, input_shape=(32, 32, 3))
        write_applications_h5(model, folder / f"{name}.h5")
        files[name] = (folder / f"{name}.h5", model)
    truncated = folder / "truncated.h5"
    truncated.write_bytes((folder / "vgg19.h5").read_bytes()[:1_000_000])
    files["truncated"] = (truncated, None)
    return files


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """A temporary Keras cache folder ($KERAS_HOME/models). KERAS_HOME is read once, when
    Keras is imported (into keras.src.backend.config._KERAS_DIR), so that is what moves."""
    from keras.src.backend import config as keras_config

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras"))
    (tmp_path / "keras" / "models").mkdir(parents=True)
    return tmp_path / "keras" / "models"
