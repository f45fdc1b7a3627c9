"""camlab.datasets.image_io: a user's image files, read as a person sees them, squared and
resized."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from camlab.datasets import image_io
from camlab.errors import CamError


def read_square(path, size):
    """A user's file as visualize_cam.py feeds it to a model of `size` px (RESIZE="crop")."""
    return image_io.resize_image(image_io.square(image_io.read_photo(path), "crop"), size)


@pytest.mark.parametrize("name, expected", [
    ("rgb", (200, 0, 0)), ("jpeg", (200, 0, 0)), ("gray", (128, 128, 128)),
    ("rgba", (255, 255, 255)), ("deep", (255, 255, 255))])
def test_image_files_are_converted_to_rgb_0_255(image_files, name, expected):
    image = read_square(image_files[name], 16).numpy()
    assert image.shape == (16, 16, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image[8, 8], expected, atol=3)


@pytest.mark.parametrize("name, message", [
    ("text", "is not an image file"), ("truncated", "is corrupt or truncated")])
def test_unreadable_image_files_are_named(image_files, name, message):
    with pytest.raises(CamError, match=message) as error:
        read_square(image_files[name], 16)
    assert str(image_files[name]) in str(error.value)


def test_very_large_images_are_refused_before_decoding(image_files, monkeypatch):
    monkeypatch.setattr(image_io, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(CamError, match="is 30x40 pixels, more than 1,000"):
        read_square(image_files["rgb"], 16)


def test_paths_and_globs(image_files, tmp_path):
    paths = image_io.expand_image_paths((str(tmp_path / "g*.png"), str(image_files["rgb"])))
    assert paths == [image_files["gray"], image_files["rgb"]]
    with pytest.raises(CamError, match="no file matches"):
        image_io.expand_image_paths((str(tmp_path / "*.gif"),))
    with pytest.raises(CamError, match="image file 'missing.jpg' not found"):
        image_io.expand_image_paths(("missing.jpg",))


def test_exif_orientation_is_applied(tmp_path):
    """A phone stores a portrait photo landscape, with EXIF orientation 6 ("rotate 90
    degrees clockwise to show"): read upright, its left half (red) is on top."""
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = (255, 0, 0)
    pixels[:, 10:] = (0, 0, 255)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # Orientation
    path = tmp_path / "portrait.jpg"
    PIL.Image.fromarray(pixels).save(path, quality=95, exif=exif)
    photo = image_io.read_photo(path)
    assert photo.shape == (20, 10, 3)
    np.testing.assert_allclose(photo[2, 5], (255, 0, 0), atol=8)
    np.testing.assert_allclose(photo[17, 5], (0, 0, 255), atol=8)


@pytest.mark.parametrize("resize, shape, top_left, top_middle", [
    ("crop", (30, 30, 3), (9, 9, 9), (9, 9, 9)),
    ("pad", (60, 60, 3), (0, 0, 0), (0, 200, 0))])
def test_a_portrait_is_cropped_or_padded_never_squashed(resize, shape, top_left, top_middle):
    portrait = np.full((60, 30, 3), 9.0, np.float32)
    portrait[:10] = (0, 200, 0)  # a green band at the top, outside the centred square
    out = image_io.square(portrait, resize)
    assert out.shape == shape
    np.testing.assert_array_equal(out[0, 0], top_left)
    np.testing.assert_array_equal(out[0, shape[1] // 2], top_middle)
    with pytest.raises(CamError, match="RESIZE='squash'; choose one of crop, pad"):
        image_io.square(portrait, "squash")


def test_gif_bmp_and_palette_files_are_read(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 1] = 160
    for name in ("a.gif", "a.bmp"):
        PIL.Image.fromarray(rgb).save(tmp_path / name)
        np.testing.assert_allclose(image_io.read_photo(tmp_path / name)[4, 4], (0, 160, 0), atol=2)


@pytest.mark.parametrize("resize", ["crop", "pad"])
def test_a_batch_is_squared_and_resized_as_each_of_its_photos(resize):
    """model_images: one (n, h, w, 3) array in one call, or its photos one by one, give the
    same images; a square photo of the model's side comes back unchanged."""
    photos = np.random.default_rng(0).uniform(0, 255, (3, 20, 12, 3)).astype(np.float32)
    batch, squares = image_io.model_images(photos, 8, resize)
    one_by_one, _ = image_io.model_images(list(photos), 8, resize)
    side = 12 if resize == "crop" else 20
    assert batch.shape == (3, 8, 8, 3) and squares[0].shape == (side, side, 3)
    np.testing.assert_allclose(batch, one_by_one, atol=1e-4)
    np.testing.assert_array_equal(image_io.square(photos, resize)[1], squares[1])
    same, _ = image_io.model_images(photos[:, :12, :12], 12, resize)
    np.testing.assert_allclose(same, photos[:, :12, :12], atol=1e-4)


def test_a_pil_image_is_read_as_its_file(image_files):
    with PIL.Image.open(image_files["rgba"]) as image:
        np.testing.assert_array_equal(image_io.from_pil(image),
                                      image_io.read_photo(image_files["rgba"]))
    assert image_io.as_uint8(np.array([-3.0, 127.5, 300.0])).tolist() == [0, 128, 255]


def test_blur_keeps_constant_images_and_smooths_edges():
    flat = np.full((1, 9, 9, 3), 100.0, np.float32)
    np.testing.assert_allclose(image_io.blurred(flat, 2.0).numpy(), flat, rtol=1e-5)
    step = np.zeros((1, 9, 9, 3), np.float32)
    step[:, :, 5:] = 255.0
    out = image_io.blurred(step, 1.5).numpy()
    assert 0 < out[0, 4, 4, 0] < 255 and out.shape == step.shape
