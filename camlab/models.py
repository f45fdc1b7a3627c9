"""GAP networks whose class scores are a linear function of the last feature maps.

Every model here is `image -> preprocessing -> backbone -> GlobalAveragePooling2D ->
Dense(classes, softmax, no bias)`, the architecture of Zhou et al. (2016) for which the
class activation map `F @ W[:, c]` averages exactly to the class score. Models take RGB
images with values in [0, 255], so callers never preprocess or de-process by hand.
"""

from __future__ import annotations

import functools

import keras

from camlab.errors import CamError, check_choice

BACKBONES = ("vgg19", "small_vgg")
VGG19_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
MIN_IMAGE_SIZE = {"vgg19": 32, "small_vgg": 16}
SMALL_VGG_WIDTHS = (16, 32, 64)  # channels of the three conv stages; two max-pools
# Batch-norm statistics must settle within a demo's few hundred steps; Keras' 0.99 lags.
SMALL_VGG_BN_MOMENTUM = 0.9


def vgg19_backbone(image_size: int, weights: str) -> keras.Model:
    """Keras' VGG19 without its top, as a nested model named "vgg19" (the seed's layout).

    `weights` is "imagenet", "" for random initialisation, or a path to a weights file.
    """
    try:
        return keras.applications.VGG19(
            include_top=False, weights=weights or None, input_shape=(image_size, image_size, 3),
            pooling=None)
    except Exception as error:  # Keras raises a bare Exception for a failed download.
        if weights != "imagenet" or "fetch failure" not in str(error):
            raise
        raise CamError(
            "could not download the ImageNet VGG19 weights (offline?). Put "
            f"{VGG19_WEIGHTS_FILE} (80,134,624 bytes, from the keras-applications "
            "release on storage.googleapis.com) into ~/.keras/models/, or pass "
            "--WEIGHTS=/path/to/that/file, or --WEIGHTS= to start from random weights."
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
