"""Trains VGG19-GAP for one step on a fixed batch and saves the weights (run as a subprocess).

usage: python one_training_step.py DEVICES STRATEGY OUT.npz
DEVICES logical CPU devices stand in for GPUs; they must be set before TensorFlow starts,
which is why this runs in its own process.
"""

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

devices, strategy_name, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)

import keras  # noqa: E402

from camlab.networks import models  # noqa: E402
from camlab.train import training  # noqa: E402

keras.utils.set_random_seed(0)
strategy = training.distribution_strategy(strategy_name)
with strategy.scope():
    model = models.build_model("vgg19", 32, 4)
    training.compile_model(model, 1e-3)
initial = model.weights[0].numpy()
rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 8)]
history = model.fit(tf.data.Dataset.from_tensor_slices((images, labels)).batch(8), epochs=1,
                    verbose=0, shuffle=False)
np.savez(out, replicas=strategy.num_replicas_in_sync, loss=history.history["loss"][0],
         initial=initial,
         **{f"w{i}": w.numpy() for i, w in enumerate(model.weights)})
