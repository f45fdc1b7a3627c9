"""A user's images as a model sees them: files read as a person sees them, then squared
(cropped or padded, never squashed) and resized to the model's side.

What the IMAGES setting of visualize_cam.py, a folder DATASET (camlab.datasets.folders) and
`camlab.explain(...).maps(images)` read: image files (EXIF orientation, 16-bit,
grayscale, transparency, animations), PIL images and arrays, all as float32 RGB in
[0, 255]. And `blurred`, the images' Gaussian blur: the baseline that deletion and
insertion fill removed pixels with, and Integrated Gradients' IG_BASELINE="blur".
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import tensorflow as tf

from camlab.errors import CamError, check_choice

MAX_IMAGE_PIXELS = 50_000_000  # a user's image larger than this is refused, not decoded
RESIZE_MODES = ("crop", "pad")


def expand_image_paths(patterns: Sequence[str | os.PathLike]) -> list[Path]:
    """Paths named by IMAGES: plain paths and globs ("photos/*.png"), in the given order."""
    paths: list[Path] = []
    for pattern in map(str, patterns):
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(os.path.expanduser(pattern)))
            if not matches:
                raise CamError(f"no file matches {pattern!r}")
            paths += [Path(match) for match in matches]
        else:
            path = Path(pattern).expanduser()
            if not path.is_file():
                raise CamError(f"image file {pattern!r} not found")
            paths.append(path)
    return paths


def read_photo(path: Path) -> np.ndarray:
    """A user's image file as a person sees it: (h, w, 3) float32 RGB in [0, 255].

    The EXIF orientation is applied (a phone's portrait photo stands upright); 16-bit
    files are scaled to [0, 255]; grayscale becomes RGB; transparency is composited over
    white; an animation gives its first frame. Raises CamError naming the file when it
    cannot be read, and before decoding when it is larger than MAX_IMAGE_PIXELS.
    """
    try:
        with PIL.Image.open(path) as image:  # reads the header only: size before decoding
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise CamError(f"{path} is {width}x{height} pixels, more than "
                               f"{MAX_IMAGE_PIXELS:,}: downscale it first")
            try:
                image.load()
                return from_pil(image)
            except (OSError, SyntaxError, ValueError) as error:
                raise CamError(f"{path} is corrupt or truncated ({error})") from None
    except (PIL.UnidentifiedImageError, PIL.Image.DecompressionBombError, OSError) as error:
        raise CamError(f"{path} is not an image file this script can read ({error})") from None


def from_pil(image: PIL.Image.Image) -> np.ndarray:
    """(h, w, 3) float32 RGB in [0, 255] from a PIL image of any mode, upright (EXIF)."""
    image = PIL.ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):  # 16- or 32-bit grayscale holding 16-bit values
        gray = np.asarray(image, np.float32) / 257.0
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), np.float32)
        alpha = rgba[..., 3:] / 255.0
        return rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return np.asarray(image.convert("RGB"), np.float32)


def square(image: np.ndarray, resize: str) -> np.ndarray:
    """The square part of (..., h, w, 3) images the model sees: RESIZE "crop" keeps the
    centred square of side min(h, w); "pad" centres the whole image on a black square of
    side max(h, w), as Keras' pad_to_aspect_ratio does. Either way nothing is squashed."""
    check_choice("RESIZE", resize, RESIZE_MODES)
    height, width = image.shape[-3:-1]
    if resize == "crop":
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return image[..., top:top + side, left:left + side, :]
    side = max(height, width)
    out = np.zeros((*image.shape[:-3], side, side, image.shape[-1]), image.dtype)
    top, left = (side - height) // 2, (side - width) // 2
    out[..., top:top + height, left:left + width, :] = image
    return out


def resize_image(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """(h, w, 3) or (b, h, w, 3) uint8 -> square float32 RGB in [0, 255], bilinear as the post."""
    return tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size])


def model_images(photos: Sequence[np.ndarray] | np.ndarray, size: int, resize: str = "crop"
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """(images (n, size, size, 3) float32 RGB in [0, 255] as the model takes them, each
    photo's square at its own resolution) from n photos (h, w, 3) of any sizes, or one
    array (n, h, w, 3): squared (square) and resized (resize_image), as IMAGES feeds them.
    Photos of one array share a size, so they go in one call; a list of photos of
    different sizes goes photo by photo."""
    if isinstance(photos, np.ndarray):
        squares = square(photos.astype(np.float32), resize)
        return resize_image(squares, size).numpy(), list(squares)
    squares = [square(np.asarray(photo, np.float32), resize) for photo in photos]
    return np.stack([resize_image(photo, size).numpy() for photo in squares]), squares


def read_images(patterns: Sequence[str | os.PathLike], size: int, resize: str = "crop"
                ) -> tuple[np.ndarray, list[np.ndarray], list[Path]]:
    """The files IMAGES names (paths or globs), as model_images makes them, and their paths."""
    paths = expand_image_paths(patterns)
    return (*model_images([read_photo(path) for path in paths], size, resize), paths)


def as_uint8(images) -> np.ndarray:
    """Images in [0, 255] of any float or integer type as uint8, rounded, for drawing."""
    return np.round(np.asarray(images, np.float32)).clip(0, 255).astype(np.uint8)


def blurred(images: tf.Tensor, sigma: float) -> tf.Tensor:
    """Gaussian blur of (batch, H, W, 3) images, the removal baseline of Petsiuk et al. 2018."""
    radius = max(1, int(3 * sigma))
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * (x / sigma) ** 2)
    kernel /= tf.reduce_sum(kernel)
    kernel = tf.tile(kernel[:, None, None, None], [1, 1, 3, 1])
    images = tf.cast(images, tf.float32)
    rows = tf.nn.depthwise_conv2d(
        tf.pad(images, [[0, 0], [radius, radius], [0, 0], [0, 0]], "SYMMETRIC"),
        kernel, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(
        tf.pad(rows, [[0, 0], [0, 0], [radius, radius], [0, 0]], "SYMMETRIC"),
        tf.transpose(kernel, [1, 0, 2, 3]), [1, 1, 1, 1], "VALID")
