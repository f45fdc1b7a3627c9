"""The CAM lab: class activation maps for any Keras image classifier, as three scripts at
the top level and as a library (camlab.api, below).

    import camlab
    explainer = camlab.explain(model, preprocess="tf")  # a keras.Model or a saved file
    maps = explainer.maps(images, method="gradcam")     # (batch, H, W) float32

`explain`, `Explainer`, `overlay`, `figure` and `score` come from camlab.api, imported on
first use, so that `import camlab` does not import TensorFlow; `CamError` is the one
exception a caller can fix. docs/api.md documents them with shapes.

Modules, by subject (docs/ARCHITECTURE.md shows how they connect):
    api          the library: explain, Explainer (maps, top_k, predict), overlay, figure, score
    errors       CamError, the one kind of error a user can fix, and the "choose one of" check
    settings     constants at the top of a script, presets and the command line
    runs         run folders: config.json, stamped weights, atomic writes, library versions
    data         tfds datasets, offline messages, the input pipeline
    image_io     a user's images (files, PIL, arrays) as the model sees them: crop or pad
    folders      a folder of class folders as a dataset
    groundtruth  which features of a tfds dataset hold its boxes and masks
    shapes       the demo dataset (cam_shapes), generated with masks and boxes
    models       GAP classifiers, their backbones, and the flat replay of nested models
    precision    MIXED_PRECISION: float32 or mixed_bfloat16, timed on this CPU
    training     distribution, caching, the optimiser and the kept weights of train_cam.py
    classifier   any Keras classifier as the methods see it: logits, layers, CAM's head
    subject      what visualize and evaluate explain: a run (RUN_NAME) or a file (MODEL)
    methods      the methods by name (METHOD), their layers, the figure's top-k maps
    method_spec  what a method is (Method) and the settings it takes (Options)
    cam_family   CAM, Grad-CAM, Grad-CAM++, Score-CAM, LayerCAM, Eigen-CAM
    attribution  maps of the input pixels: gradient saliency
    randomness   random numbers keyed by (seed, image, use): the same in any batch
    metrics      localisation and faithfulness scores, per batch and pooled
    localisation dataset-level WSOL scores (MaxBoxAccV2, PxAP, Choe et al. 2020)
    plots        the figures
    results      `make results`: docs/results/ and the tables of the README and guides
    reference    the post's per-image loop, the baseline tests and benchmark compare to
The CAM maths itself (maps, normalisation, threshold, upsampling) is cam_utils.py.
"""

from camlab.errors import CamError

__version__ = "0.1.0"
__all__ = ["CamError", "Explainer", "explain", "figure", "overlay", "score"]
_API = ("Explainer", "explain", "figure", "overlay", "score")  # in camlab.api


def __getattr__(name: str):
    """The API's names, importing camlab.api (and TensorFlow) on first use."""
    if name in _API:
        from camlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'camlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
