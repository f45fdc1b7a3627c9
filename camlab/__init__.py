"""The CAM lab's shared code; the three scripts at the top level are its front door.

Modules, by subject (docs/ARCHITECTURE.md shows how they connect):
    errors     CamError, the one kind of error a user can fix, and the "choose one of" check
    settings   constants at the top of a script, presets and the command line
    runs       run folders: config.json, stamped weights, atomic writes, library versions
    data       tfds datasets, the input pipeline, a user's own image files
    shapes     the demo dataset (cam_shapes), generated with masks and boxes
    models     GAP classifiers and their backbones
    training   precision, distribution, caching and the optimiser for train_cam.py
    methods    map methods (CAM, Grad-CAM) for chosen classes, and the figure's top-k maps
    metrics    localisation and faithfulness scores, per batch and summarised
    localisation  dataset-level WSOL scores (MaxBoxAccV2, PxAP, Choe et al. 2020)
    plots      the figures
    reference  the seed post's per-image loop, the baseline tests and benchmark compare to
The CAM maths itself (maps, normalisation, threshold, upsampling) is cam_utils.py.
"""
