"""The CAM lab: class activation maps for any Keras image classifier, as three scripts at
the top level and as a library (camlab.api, below).

    import camlab
    explainer = camlab.explain(model, preprocess="tf")  # a keras.Model or a saved file
    maps = explainer.maps(images, method="gradcam")     # (batch, H, W) float32

`explain`, `Explainer`, `overlay`, `figure` and `score` come from camlab.api, imported on
first use, so that `import camlab` does not import TensorFlow; `CamError` is the one
exception a caller can fix. docs/api.md documents them with shapes.

Modules, by layer: one folder each, and a module imports only its own layer and those
listed before it (tests/test_package.py checks; docs/ARCHITECTURE.md shows the flow):
    errors        CamError, the one kind of error a user can fix, and the "choose one of" check
    core/         randomness: random numbers keyed by (seed, image, use), the same in any
                  batch; settings: constants at the top of a script, presets, the command
                  line; runs: run folders, config.json, stamped weights, atomic writes;
                  tables: number formats and Markdown tables
    datasets/     data: tfds datasets, offline messages, the input pipeline; folders: a
                  folder of class folders; image_io: a user's images as the model sees them,
                  and their blur; groundtruth: which features hold boxes and masks; shapes:
                  the generated cam_shapes, with masks and boxes
    networks/     models: GAP classifiers, their backbones, the flat replay of nested models;
                  classifier: any Keras classifier as the methods see it; frozen: a model's
                  function with its weights as constants; subject: a run (RUN_NAME) or a file
                  (MODEL)
    train/        training: distribution, caching, the optimiser, the kept weights;
                  precision: MIXED_PRECISION, timed on this CPU; probe: TRAIN_LAYERS="head"
    maps/         method_spec: what a method is (Method) and takes (Options); methods: the
                  registry by name (METHOD), layers, the figure's top-k maps; cam_family:
                  maps of a layer's activations; attribution: gradients of the pixels;
                  perturbation: occlusion, RISE; reference: the post's per-image loop
    scores/       registry: every score's record (Metric: key, title, direction, needs,
                  statistic); metrics: per-image localisation, the baselines' maps; localisation:
                  MaxBoxAccV2, PxAP (Choe et al. 2020); removal: deletion and insertion;
                  faithfulness: Average Drop, IC, ROAD; knowncause: scores against a known
                  cause; intervals: the bootstrap and the ties
    evaluate/     evaluation: every method in one pass per batch; leaderboard: the boards;
                  shards: SHARD and MERGE_SHARDS; trust: which scores the known cause trusts
    report/       plots: the figures; results: `make results`, the docs' result tables
    api           the library: explain, Explainer (maps, top_k, predict), overlay, figure, score
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
