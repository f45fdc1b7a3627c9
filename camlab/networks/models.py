"""GAP networks whose class scores are a linear function of the last feature maps.

Every model here is one flat functional graph: `image -> preprocessing -> backbone layers
-> GlobalAveragePooling2D ("gap") -> Dense(classes, softmax, no bias) ("classifier")`, the
architecture of Zhou et al. (2016) for which the class activation map `F @ W[:, c]`
averages exactly to the class score. The backbone's layers keep the names Keras gives
them (block5_conv4, conv5_block3_out, ...), so Keras' own ImageNet weight files load, any
layer can be reached by name, and `keras.models.load_model` reads a saved model without
this project. Models take RGB images with values in [0, 255].
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import keras

from camlab.errors import CamError, check_choice

SMALL_VGG_WIDTHS = (16, 32, 64)  # channels of the three conv stages; two max-pools
# tiny_vgg: small_vgg at half the channels, about twice as fast to train on a 2-core CPU
# (the known-cause benchmark's network: docs/known_cause.md).
TINY_VGG_WIDTHS = (8, 16, 32)
# Batch-norm statistics must settle within a demo's few hundred steps; Keras' 0.99 lags.
SMALL_VGG_BN_MOMENTUM = 0.9
# keras.applications.<family>.preprocess_input(mode="caffe"): BGR, ImageNet means subtracted.
CAFFE_MEANS_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Backbone:
    """What the lab knows of a backbone: how to build it, what input its ImageNet weights
    expect, the smallest image it takes, and Keras' no-top weights file (name, size in
    bytes, the hash Keras checks it against)."""

    application: str  # the keras.applications constructor; "" for small_vgg and tiny_vgg
    preprocessing: str  # "caffe", "tf" (to [-1, 1]), "unit" (to [0, 1]) or "inside" the model
    min_size: int  # pixels: each stride-2 stage needs a map of at least 1 pixel
    weights_file: str = ""
    weights_size: int = 0
    weights_hash: str = ""
    widths: tuple[int, ...] = ()  # the project's own VGG-style networks: channels per stage


# Files, sizes and hashes as keras.applications 3.15 fetches them (sizes from published
# download logs; MobileNetV2's file has no hash in Keras, ConvNeXt's is a sha256).
BACKBONES = {
    "vgg19": Backbone("VGG19", "caffe", 32, "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                      80_134_624, "253f8cb515780f3b799900260a226db6"),
    "vgg16": Backbone("VGG16", "caffe", 32, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                      58_889_256, "6d6bbae143d832006294945121d1f1fc"),
    "resnet50": Backbone("ResNet50", "caffe", 32,
                         "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", 94_765_736,
                         "4d473c1dd8becc155b73f8504c6f6626"),
    "mobilenet_v2": Backbone("MobileNetV2", "tf", 32,
                             "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
                             9_406_464),
    "efficientnet_b0": Backbone("EfficientNetB0", "inside", 32, "efficientnetb0_notop.h5",
                                16_705_208, "50bc09e76180e00e4465e1a485ddc09d"),
    "convnext_tiny": Backbone(
        "ConvNeXtTiny", "inside", 32, "convnext_tiny_notop.h5", 111_650_432,
        "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
    "small_vgg": Backbone("", "unit", 16, widths=SMALL_VGG_WIDTHS),
    "tiny_vgg": Backbone("", "unit", 16, widths=TINY_VGG_WIDTHS),
}


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


def _file_hash(path: Path, expected: str) -> str:
    """The file's md5 or sha256, whichever `expected` is (by its length, as Keras decides)."""
    with path.open("rb") as weights_file:
        return hashlib.file_digest(weights_file, "sha256" if len(expected) == 64 else
                                   "md5").hexdigest()


def check_cached_weights(name: str) -> None:
    """Refuses a backbone's weights file in Keras' cache that is not the one Keras expects.

    Keras compares the cached file's hash with its registered one and, on a difference,
    deletes the file and downloads it again: offline the user's file is gone and all
    that is left is a "URL fetch failure". Checking first names the file and keeps it.
    """
    spec = BACKBONES[name]
    path = keras_cache_dir() / spec.weights_file
    if not path.is_file():
        return
    size = path.stat().st_size
    if size == spec.weights_size:
        if not spec.weights_hash or _file_hash(path, spec.weights_hash) == spec.weights_hash:
            return
        problem = (f"has the right size ({size:,} bytes) but not the hash Keras expects "
                   f"({spec.weights_hash})")
    else:
        problem = f"is {size:,} bytes, but Keras expects {spec.weights_size:,} bytes"
    raise CamError(f"{shown_path(path)} {problem}: it is incomplete or not the "
                   f"keras-applications {name} no-top file, and Keras would delete it to "
                   "download it again; replace it, or pass --WEIGHTS=/path/to/weights.h5")


def is_model_file(weights: str) -> bool:
    """True when WEIGHTS names a whole saved model (a run's model.keras), whose backbone
    build_model copies, rather than a backbone's weights file."""
    return weights.endswith(".keras")


def weights_source(name: str, weights: str) -> str | None:
    """What to pass as `weights=` to the keras.applications constructor, checked first:
    "imagenet" (Keras' cache or a download), a file path, or None for random weights (also
    for a model.keras, whose weights build_model copies afterwards)."""
    if not weights or is_model_file(weights):
        return None
    if not BACKBONES[name].application:
        raise CamError(f"{name} has no pretrained weights; set WEIGHTS to \"\"")
    if weights == "imagenet":
        check_cached_weights(name)
        return weights
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CamError(f"WEIGHTS file {weights!r} not found")
    return str(path)


def flat_call(model: keras.Model, inputs, record=None, prefix: str = "", substitute=None):
    """Calls `model` on the symbolic `inputs` layer by layer, opening every nested model
    (Sequential or functional) on the way, so that its layers join the caller's graph as
    they are, with their names and weights. Keras' own graph walk (Functional's
    `_run_through_graph`, a private method) replays each node with the same arguments.

    `record(name, layer, args, outputs)`, when given, sees every layer call; a layer of a
    nested model is named by its path, "vgg16/block5_conv3". `substitute(layer)`, when
    given, returns what to call in that layer's place (attribution.py's guided ReLUs on
    real tensors), or None to keep the layer.
    """
    def replay(operation, path):
        if isinstance(operation, keras.Sequential):
            def sequential(x, *args, **kwargs):
                for layer in operation.layers:
                    x = replay(layer, f"{path}{operation.name}/")(x)
                return x
            return sequential
        if isinstance(operation, keras.Model):
            return lambda *args, **kwargs: flat_call(
                operation, args[0] if len(args) == 1 else list(args), record,
                f"{path}{operation.name}/", substitute)
        called = (substitute(operation) if substitute else None) or operation
        if record is None:
            return called

        def recorded(*args, **kwargs):
            outputs = called(*args, **kwargs)
            record(path + operation.name, operation, args, outputs)
            return outputs
        return recorded

    if isinstance(model, keras.Sequential):  # only ever the outermost model: replay opens others
        for layer in model.layers:
            inputs = replay(layer, prefix)(inputs)
        return inputs
    return model._run_through_graph(inputs, operation_fn=lambda op: replay(op, prefix))


def application_layers(name: str, inputs, image_size: int, weights: str):
    """Keras' application `name` without its top, its weights loaded by Keras itself, then
    replayed on `inputs` (a tensor of the caller's graph) with flat_call, so its layers
    join that graph instead of nesting (Keras builds ConvNeXt's stem and downsampling
    blocks as Sequential models). Returns its last feature maps. Every way a weights file
    can be wrong is one CamError."""
    spec = BACKBONES[name]
    source = weights_source(name, weights)
    try:
        application = getattr(keras.applications, spec.application)(
            include_top=False, weights=source, input_shape=(image_size, image_size, 3))
    except (ValueError, OSError) as error:  # h5py: OSError; wrong layers or shapes: ValueError
        if source is None:
            raise
        shown = shown_path(keras_cache_dir() / spec.weights_file if source == "imagenet"
                           else Path(source))
        raise CamError(f"{shown} could not be loaded as {name} no-top weights "
                       f"({' '.join(str(error).split())})") from None
    except Exception as error:  # Keras raises a bare Exception for a failed download.
        if source != "imagenet" or "fetch failure" not in str(error):
            raise
        raise CamError(
            f"could not download the ImageNet {name} weights (offline?). Put "
            f"{spec.weights_file} ({spec.weights_size:,} bytes, from the keras-applications "
            f"release on storage.googleapis.com) into {shown_path(keras_cache_dir())}/, or "
            "pass --WEIGHTS=/path/to/that/file, or --WEIGHTS= to start from random weights."
        ) from None
    return flat_call(application, inputs)


def small_vgg_layers(inputs, widths: tuple[int, ...] = SMALL_VGG_WIDTHS):
    """A VGG-style network with batch norm that learns from scratch on a CPU in minutes.

    Three stages of two 3x3 conv + BN + ReLU, `widths` channels, with a 2x2 max-pool
    between stages, so the final feature map is image_size / 4 on a side (16x16 at 64 px):
    fine enough for CAM.
    """
    x = inputs
    for stage, width in enumerate(widths):
        if stage:
            x = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
        for conv in (1, 2):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                    name=f"conv{stage + 1}_{conv}")(x)
            x = keras.layers.BatchNormalization(momentum=SMALL_VGG_BN_MOMENTUM,
                                                name=f"bn{stage + 1}_{conv}")(x)
            x = keras.layers.ReLU(name=f"relu{stage + 1}_{conv}")(x)
    return x


# keras.applications.imagenet_utils.preprocess_input(mode="torch"): [0, 1], then ImageNet
# mean and standard deviation per RGB channel.
TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def preprocessing(mode: str, images):
    """An input transform of RGB [0, 255] `images` from built-in, serializable parts, in
    float32 (bfloat16 would round pixel values by up to 1).

    caffe (VGG, ResNet): RGB -> BGR, then the ImageNet means subtracted, as
    `keras.applications.vgg19.preprocess_input`; tf (MobileNetV2): to [-1, 1]; torch:
    to [0, 1], then ImageNet mean and std; unit (small_vgg): to [0, 1]; "inside" or "none"
    for a model that carries its own (EfficientNet, ConvNeXt).
    """
    if mode in ("inside", "none"):
        return images
    if mode == "caffe":
        bgr = keras.ops.flip(images, axis=-1)
        return keras.layers.Rescaling(1.0, offset=[-mean for mean in CAFFE_MEANS_BGR],
                                      name="preprocess", dtype="float32")(bgr)
    if mode == "torch":
        return keras.layers.Rescaling(
            [1 / (255 * std) for std in TORCH_STD],
            [-mean / std for mean, std in zip(TORCH_MEAN, TORCH_STD, strict=True)],
            name="preprocess", dtype="float32")(images)
    scale, offset = {"tf": (1 / 127.5, -1.0), "unit": (1 / 255, 0.0)}[mode]
    return keras.layers.Rescaling(scale, offset, name="preprocess", dtype="float32")(images)


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of a flat GAP model but its input and its classifier, in graph order."""
    return [layer for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer) and layer.name != "classifier"]


def copy_backbone(model: keras.Model, path: str, backbone: str) -> None:
    """Sets every weight of `model` but its classifier's from the model saved at `path`
    (a run's model.keras: the same backbone, any image size or classes), layer by layer
    in graph order; CamError when the file is not such a model.

    Layers are matched by position and checked by class and weight shapes, not by name:
    Keras numbers unnamed layers (normalization_1) by what the process built before.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise CamError(f"WEIGHTS file {path!r} not found")
    try:
        saved = keras.models.load_model(file, compile=False)
    except (ValueError, OSError, TypeError) as error:
        raise CamError(f"WEIGHTS={path!r} could not be loaded as a Keras model "
                       f"({' '.join(str(error).split())})") from None
    ours, theirs = backbone_layers(model), backbone_layers(saved)

    def signature(layers, index):  # what must agree: the layer's kind and weight shapes
        if index >= len(layers):
            return None
        return type(layers[index]).__name__, [tuple(w.shape) for w in layers[index].weights]

    def shown(layers, index):
        found = signature(layers, index)
        return f"{layers[index].name} {found}" if found else "nothing"

    for index in range(max(len(ours), len(theirs))):
        if signature(ours, index) != signature(theirs, index):
            raise CamError(f"WEIGHTS={path!r} is not a {backbone} GAP model as train_cam.py "
                           f"saves it (its layer {index + 1} is {shown(theirs, index)}, "
                           f"{backbone}'s is {shown(ours, index)}): pass the model.keras of a "
                           f"run with BACKBONE={backbone}")
    for layer, source in zip(ours, theirs, strict=True):
        if layer.weights:
            layer.set_weights(source.get_weights())


def build_model(backbone: str, image_size: int, num_classes: int,
                weights: str = "") -> keras.Model:
    """The CAM classifier: RGB [0, 255] images (batch, size, size, 3) -> softmax (batch, classes).

    `weights` starts the backbone: "" random, "imagenet" (Keras' file), a backbone weights
    file, or a run's model.keras (its backbone's weights are copied, the classifier starts
    afresh, so the classes and image size may differ from that run's).
    The softmax head is float32 under a mixed-precision policy, so probabilities and the
    CAM weights keep full precision.
    """
    check_choice("BACKBONE", backbone, BACKBONES)
    if image_size < BACKBONES[backbone].min_size:
        raise CamError(f"IMAGE_SIZE={image_size} is below {backbone}'s minimum of "
                       f"{BACKBONES[backbone].min_size} pixels")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = preprocessing(BACKBONES[backbone].preprocessing, inputs)
    if BACKBONES[backbone].application:
        features = application_layers(backbone, x, image_size, weights)
    else:
        weights_source(backbone, weights)
        features = small_vgg_layers(x, BACKBONES[backbone].widths)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    probs = keras.layers.Dense(num_classes, activation="softmax", use_bias=False,
                               dtype="float32", name="classifier")(pooled)
    model = keras.Model(inputs, probs, name=f"{backbone}_gap")
    if BACKBONES[backbone].application:
        # The replayed layers also keep their call in the application's own graph, where
        # `layer.output` would point; a clone of the flat graph has one call per layer.
        fresh = keras.models.clone_model(model)
        fresh.set_weights(model.get_weights())
        model = fresh
    if is_model_file(weights):
        copy_backbone(model, weights, backbone)
    return model
