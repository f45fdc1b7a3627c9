"""GAP networks whose class scores are a linear function of the last feature maps.

Every model here is `image -> preprocessing -> backbone -> GlobalAveragePooling2D ->
Dense(classes, softmax, no bias)`, the architecture of Zhou et al. (2016) for which the
class activation map `F @ W[:, c]` averages exactly to the class score. Models take RGB
images with values in [0, 255], so callers never preprocess or de-process by hand.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import keras

from camlab.errors import CamError, check_choice

BACKBONES = ("vgg19", "small_vgg")
VGG19_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
# What keras.applications.VGG19 accepts in its cache: the size of the keras-applications
# release file and the md5 Keras checks it against (file_hash in keras/src/applications/vgg19.py).
VGG19_WEIGHTS_SIZE = 80_134_624
VGG19_WEIGHTS_MD5 = "253f8cb515780f3b799900260a226db6"
MIN_IMAGE_SIZE = {"vgg19": 32, "small_vgg": 16}
SMALL_VGG_WIDTHS = (16, 32, 64)  # channels of the three conv stages; two max-pools
# Batch-norm statistics must settle within a demo's few hundred steps; Keras' 0.99 lags.
SMALL_VGG_BN_MOMENTUM = 0.9


def keras_cache_dir() -> Path:
    """Where keras.utils.get_file keeps the weights: $KERAS_HOME/models, else ~/.keras/models.

    Keras reads KERAS_HOME once, when it is imported, and uses /tmp/.keras when the
    folder is not writable; this asks Keras for the folder it resolved (a private module:
    Keras has no public function for it).
    """
    from keras.src.backend import config

    home = os.path.expanduser(config.keras_home())
    if not os.access(home, os.W_OK):
        home = "/tmp/.keras"
    return Path(home) / "models"


def shown_path(path: Path) -> str:
    """A path as the user would type it: the home folder as ~."""
    home, text = str(Path.home()), str(path)
    return "~" + text[len(home):] if text == home or text.startswith(home + os.sep) else text


def check_cached_vgg19_weights() -> None:
    """Refuses a VGG19 weights file in Keras' cache that is not the one Keras expects.

    Keras compares the cached file's md5 with its registered hash and, on a difference,
    deletes the file and downloads it again: offline the user's file is gone and all
    that is left is a "URL fetch failure". Checking first names the file and keeps it.
    """
    path = keras_cache_dir() / VGG19_WEIGHTS_FILE
    if not path.is_file():
        return
    size = path.stat().st_size
    if size == VGG19_WEIGHTS_SIZE:
        with path.open("rb") as weights_file:
            if hashlib.file_digest(weights_file, "md5").hexdigest() == VGG19_WEIGHTS_MD5:
                return
        problem = (f"has the right size ({size:,} bytes) but not the md5 Keras expects "
                   f"({VGG19_WEIGHTS_MD5})")
    else:
        problem = f"is {size:,} bytes, but Keras expects {VGG19_WEIGHTS_SIZE:,} bytes"
    raise CamError(f"{shown_path(path)} {problem}: it is incomplete or not the "
                   "keras-applications VGG19 no-top file, and Keras would delete it to "
                   "download it again; replace it, or pass --WEIGHTS=/path/to/weights.h5")


def vgg19_backbone(image_size: int, weights: str) -> keras.Model:
    """Keras' VGG19 without its top, as a nested model named "vgg19" (the seed's layout).

    `weights` is "imagenet" (Keras' cache, else a download), "" for random
    initialisation, or a path to a weights file. Every way a file can be wrong ends in
    a one-line CamError naming it.
    """
    if weights == "imagenet":
        check_cached_vgg19_weights()
        source = keras_cache_dir() / VGG19_WEIGHTS_FILE
    elif weights:
        source = Path(weights).expanduser()
        if not source.is_file():
            raise CamError(f"WEIGHTS file {weights!r} not found")
        weights = str(source)
    try:
        return keras.applications.VGG19(
            include_top=False, weights=weights or None, input_shape=(image_size, image_size, 3),
            pooling=None)
    except (ValueError, OSError) as error:  # h5py: OSError; wrong layers or shapes: ValueError
        if not weights:
            raise
        detail = " ".join(str(error).split())
        raise CamError(f"{shown_path(source)} could not be loaded as VGG19 no-top weights "
                       f"({detail})") from None
    except Exception as error:  # Keras raises a bare Exception for a failed download.
        if weights != "imagenet" or "fetch failure" not in str(error):
            raise
        raise CamError(
            "could not download the ImageNet VGG19 weights (offline?). Put "
            f"{VGG19_WEIGHTS_FILE} ({VGG19_WEIGHTS_SIZE:,} bytes, from the keras-applications "
            f"release on storage.googleapis.com) into {shown_path(keras_cache_dir())}/, or "
            "pass --WEIGHTS=/path/to/that/file, or --WEIGHTS= to start from random weights."
        ) from None


def small_vgg_backbone(image_size: int) -> keras.Model:
    """A VGG-style network with batch norm that learns from scratch on a CPU in minutes.

    Three stages of two 3x3 conv + BN + ReLU, with a 2x2 max-pool between stages, so the
    final feature map is image_size / 4 on a side (16x16 at 64 px): fine enough for CAM.
    """
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    for stage, width in enumerate(SMALL_VGG_WIDTHS):
        if stage:
            x = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
        for conv in (1, 2):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                    name=f"conv{stage + 1}_{conv}")(x)
            x = keras.layers.BatchNormalization(momentum=SMALL_VGG_BN_MOMENTUM,
                                                name=f"bn{stage + 1}_{conv}")(x)
            x = keras.layers.ReLU(name=f"relu{stage + 1}_{conv}")(x)
    return keras.Model(inputs, x, name="small_vgg")


def preprocessing(backbone: str) -> keras.layers.Layer:
    """The input transform each backbone was trained with, kept in float32.

    VGG19: RGB->BGR and ImageNet mean subtraction (`keras.applications.vgg19`); small_vgg:
    scaling to [0, 1]. float32 because bfloat16 would round pixel values by up to 1.
    """
    if backbone == "vgg19":
        return keras.layers.Lambda(keras.applications.vgg19.preprocess_input,
                                   name="preprocess", dtype="float32")
    return keras.layers.Rescaling(1 / 255, name="preprocess", dtype="float32")


def build_model(backbone: str, image_size: int, num_classes: int,
                weights: str = "") -> keras.Model:
    """The CAM classifier: RGB [0, 255] images (batch, size, size, 3) -> softmax (batch, classes).

    The softmax head is float32 under a mixed-precision policy, so probabilities and the
    CAM weights keep full precision.
    """
    check_choice("BACKBONE", backbone, BACKBONES)
    if image_size < MIN_IMAGE_SIZE[backbone]:
        raise CamError(f"IMAGE_SIZE={image_size} is below {backbone}'s minimum of "
                       f"{MIN_IMAGE_SIZE[backbone]} pixels")
    if backbone == "vgg19":
        features_model = vgg19_backbone(image_size, weights)
    else:
        if weights:
            raise CamError("small_vgg has no pretrained weights; set WEIGHTS to \"\"")
        features_model = small_vgg_backbone(image_size)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = features_model(preprocessing(backbone)(inputs))
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    probs = keras.layers.Dense(num_classes, activation="softmax", use_bias=False,
                               dtype="float32", name="classifier")(pooled)
    return keras.Model(inputs, probs, name=f"{backbone}_gap")


@functools.lru_cache(maxsize=8)
def feature_model(model: keras.Model) -> keras.Model:
    """The same network with two outputs: last feature maps (b, h, w, k) and softmax (b, c).

    It reuses the outer graph's tensor that feeds GAP, so it works with the backbone
    nested as one layer, where reaching into the backbone's own layers would raise
    "Graph disconnected". Cached, so calling it per batch costs nothing.
    """
    return keras.Model(model.input, [model.get_layer("gap").input, model.output])


def class_weights(model: keras.Model):
    """The bias-free head's kernel W, (channels, classes) float32: CAM_c = F @ W[:, c]."""
    return model.get_layer("classifier").kernel
