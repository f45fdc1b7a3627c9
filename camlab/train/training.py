"""How train_cam.py trains: devices and workers, caching, the optimiser, the kept weights.

The precision policy is chosen in camlab.train.precision.

Each function turns one setting into what Keras or tf.distribute needs, and rejects a value
no run could use with a CamError.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from camlab.core import runs
from camlab.errors import CamError, check_choice

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
CACHE_CHOICES = ("auto", "yes", "no")
LR_SCHEDULES = ("constant", "cosine")
KEEP_CHOICES = ("last", "best")
MONITOR = "val_accuracy"  # what KEEP="best" chooses the epoch by


def distribution_strategy(choice: str, worker_timeout: float = 60) -> tf.distribute.Strategy:
    """The tf.distribute strategy for STRATEGY: "auto" mirrors over all GPUs when 2+.

    MirroredStrategy keeps a copy of the model per device, splits each global batch of
    BATCH_SIZE across them and averages the gradients, so results match one device.
    "multiworker" does the same across the machines TF_CONFIG names (multi_worker_strategy).
    """
    check_choice("STRATEGY", choice, STRATEGIES)
    if choice == "multiworker":
        return multi_worker_strategy(worker_timeout)
    gpus = tf.config.list_logical_devices("GPU")
    if choice == "mirrored" or (choice == "auto" and len(gpus) > 1):
        # Without GPUs, mirror over the logical CPU devices (how the tests stand in for two).
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    return tf.distribute.get_strategy()


TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}\'')


def cluster_from_tf_config() -> dict[str, list[str]]:
    """The cluster TF_CONFIG names ({"worker": ["host:port", ...]}, maybe a "chief"),
    after checking that it also places this process in it."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise CamError('STRATEGY="multiworker" needs the environment variable TF_CONFIG: the '
                       f"cluster and this worker's place in it, e.g. {TF_CONFIG_EXAMPLE} "
                       "(see docs/hardware.md, \"Several machines\")")
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        workers = cluster[task["type"]]
        if not 0 <= int(task["index"]) < len(workers):
            raise IndexError(task["index"])
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise CamError(f"TF_CONFIG={text!r} does not name a cluster and this worker's place "
                       f"in it ({type(error).__name__}: {error}); write it as "
                       f"{TF_CONFIG_EXAMPLE}, with index 0, 1, ... on each machine") from None
    return cluster


class KerasMultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy made usable by Keras 3's fit (keras-team/keras#20585).

    Keras hands strategy.reduce whole structures: the first (images, labels) batch, to
    learn its shapes, and every step's scalar logs with axis=0. Across workers the
    strategy reduces only one tensor at a time, and a scalar has no axis 0; so each
    tensor is reduced alone, a scalar across workers only (its mean over replicas).
    """

    def reduce(self, reduce_op, value, axis):
        def reduce_one(tensor):
            local = (tensor.values[0] if isinstance(tensor, tf.distribute.DistributedValues)
                     else tensor)
            return super(KerasMultiWorkerStrategy, self).reduce(
                reduce_op, tensor, None if local.shape.rank == 0 else axis)
        return tf.nest.map_structure(reduce_one, value)


def multi_worker_strategy(timeout: float) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy over the cluster in TF_CONFIG, with bounded waits.

    Every worker waits at most `timeout` seconds for the others to start (TensorFlow's
    default is an hour), and a worker that dies is given up on when a connection to it
    breaks, often within seconds, or at the latest when its heartbeats (sent by a C++
    thread, so a busy worker still sends them) have been missing for `timeout` seconds.
    These are settings of the coordination service, which MultiWorkerMirroredStrategy
    starts with its defaults unless it was configured before.
    """
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    cluster = cluster_from_tf_config()
    jobs = [job for job in ("chief", "worker") if job in cluster]
    milliseconds = int(timeout * 1000)
    tf_context = context.context()
    tf_context.configure_coordination_service(
        service_type="standalone", service_leader=f"/job:{jobs[0]}/replica:0/task:0",
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=job,
                                                                 num_tasks=len(cluster[job]))
                          for job in jobs],
        cluster_register_timeout_in_ms=milliseconds, heartbeat_timeout_in_ms=milliseconds,
        shutdown_barrier_timeout_in_ms=milliseconds)
    # Without it, a worker registers alone and then waits in its first collective op.
    tf_context.coordination_service.cluster_register_with_barrier = True
    workers = sum(len(tasks) for tasks in cluster.values())
    with lost_workers(f"the {workers} workers in TF_CONFIG did not all start within "
                      f"WORKER_TIMEOUT={timeout:g} s"):
        strategy = KerasMultiWorkerStrategy()
    # Stopped with `kill` or Ctrl-C, a worker ends at once, and the others then stop as
    # for any worker that dies. Otherwise the coordination service would catch SIGTERM
    # (to announce a preemption, which nothing here acts on) and train on, and Python's
    # KeyboardInterrupt would wait at exit, up to `timeout`, for the others to finish.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder: yes, unless it is one of the other
    workers of a multi-worker cluster (the chief is TF_CONFIG's "chief", else worker 0)."""
    return strategy.extended.should_checkpoint


def worker_name(strategy: tf.distribute.Strategy) -> str:
    """"worker 1 of 2" (TF_CONFIG's task), "" outside a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return ""
    spec = resolver.cluster_spec()
    total = sum(spec.num_tasks(job) for job in spec.jobs)
    return f"{resolver.task_type} {resolver.task_id} of {total}"


# What TensorFlow raises in a worker whose peers are gone, late or unreachable.
LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                      tf.errors.CancelledError, tf.errors.AbortedError)
_STACK_LINES = ("Graph execution error", "Detected at node", "File ", "[[", "The error could be")


@contextlib.contextmanager
def lost_workers(problem: str):
    """Turns the errors of a worker that lost the others into one line (CamError) that
    starts with `problem` and gives TensorFlow's reason (tensorflow_reason)."""
    try:
        yield
    except LOST_WORKER_ERRORS as error:
        raise CamError(f"STRATEGY=\"multiworker\": {problem} ({type(error).__name__}: "
                       f"{tensorflow_reason(error.message)}); start the same command on every "
                       "machine in TF_CONFIG, each with its own index, and check that they can "
                       "reach one another") from None


def tensorflow_reason(message: str) -> str:
    """A TensorFlow error message in one line, without the stack of graph nodes, the
    {{function_node ...}} tags and gRPC's details, but naming the remote task."""
    lines = (line.strip() for line in message.splitlines())
    text = " ".join(line for line in lines if line and not line.startswith(_STACK_LINES))
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    text, _, grpc = text.partition(" Additional GRPC error information")
    remote = re.search(r"from remote target (\S+)", grpc)
    text = text if len(text) <= 400 else text[:400] + "..."
    return text + (f" (remote task {remote.group(1)})" if remote else "")


class SameStatisticsOnEveryWorker(keras.callbacks.Callback):
    """Averages the workers' moving statistics (batch normalisation's moving mean and
    variance) before every validation and at the end of every epoch, so that every worker
    holds, and the chief saves and validates, one and the same model.

    Gradients are all-reduced, so trainable weights agree by themselves; but Keras'
    BatchNormalization updates its moving averages from each worker's own share of the
    global batch and never synchronises them. An exponential moving average is linear in
    the batch means it takes in, so averaging the workers' averages once gives what
    averaging every step's batch means would (and for the variance, the mean of the
    workers' batch variances). All non-trainable float weights are averaged; those the
    workers already agree on (a Normalization layer's constants) stay as they are.
    """

    def __init__(self, strategy: tf.distribute.Strategy):
        super().__init__()
        self.strategy = strategy

    def average(self, *unused) -> None:
        weights = [weight for weight in self.model.non_trainable_weights
                   if tf.as_dtype(weight.dtype).is_floating]
        if not weights:
            return
        flat = tf.concat([tf.reshape(weight.value, [-1]) for weight in weights], axis=0)
        mean = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, flat, axis=None)
        sizes = [int(np.prod(weight.shape)) for weight in weights]
        for weight, part in zip(weights, tf.split(mean, sizes), strict=True):
            weight.assign(tf.reshape(part, weight.shape))

    on_test_begin = on_epoch_end = average


def shard_by_example(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """With several workers, each reads the whole split and keeps its share of every
    global batch (tf.data's DATA sharding); one worker alone is unaffected.

    tf.distribute's default gives each worker whole files instead, which fails when a
    split has fewer files than there are workers (cam_shapes' splits are one file each)
    and would leave workers with different numbers of batches.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def should_cache(choice: str, num_examples: int, image_size: int,
                 memory_fraction: float) -> bool:
    """CACHE: "auto" keeps the resized float32 split in memory when it takes less than
    `memory_fraction` of the machine's RAM."""
    if check_choice("CACHE", choice, CACHE_CHOICES) != "auto":
        return choice == "yes"
    return fits_in_memory(num_examples * image_size * image_size * 3 * 4, memory_fraction)


def fits_in_memory(needed_bytes: int, memory_fraction: float) -> bool:
    """CACHE="auto"'s rule: `needed_bytes` take less than `memory_fraction` of the RAM."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 0 < needed_bytes < memory_fraction * memory


def learning_rate(config: dict[str, Any], steps_per_epoch: int):
    """LEARNING_RATE, constant or decayed along a cosine to 0 at the last step."""
    check_choice("LR_SCHEDULE", config["LR_SCHEDULE"], LR_SCHEDULES)
    if config["LR_SCHEDULE"] == "constant" or steps_per_epoch < 1:
        return config["LEARNING_RATE"]
    return keras.optimizers.schedules.CosineDecay(config["LEARNING_RATE"],
                                                  config["EPOCHS"] * steps_per_epoch)


def compile_model(model: keras.Model, learning_rate) -> None:
    """Adam on categorical cross-entropy; Keras calls both as (y_true, y_pred)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])


class KeptWeights(keras.callbacks.Callback):
    """Writes the weights a run keeps, and its model.keras, atomically (runs.save_trained).

    KEEP="last" writes every epoch's weights, so the file holds the last finished epoch
    (the post's choice); KEEP="best" writes only when MONITOR improves, which train_cam.py
    measures on a slice held out of the training split. Keras' ModelCheckpoint writes in
    place, so an interrupted save would leave a truncated file for visualize_cam.py.
    """

    def __init__(self, run_dir: Path, run_config: dict, keep: str,
                 previous: dict | None = None, saved: keras.Model | None = None):
        super().__init__()
        self.run_dir, self.run_config = run_dir, run_config
        # The model written: the one fit trains, unless fit trains only part of `saved`
        # (TRAIN_LAYERS="head" fits the classifier alone).
        self.saved = saved
        self.keep = check_choice("KEEP", keep, KEEP_CHOICES)
        # "epoch" (from 1) and the logs of the kept epoch; a resumed run starts from the
        # best row of its history.csv, whose weights are already in the file.
        self.kept: dict[str, float] = dict(previous or {})
        self.best = self.kept.get(MONITOR, -float("inf"))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        value = logs.get(MONITOR, -float("inf"))
        if self.keep == "last" or value > self.best:
            self.best = max(self.best, value)
            runs.save_trained(self.saved or self.model, self.run_dir, self.run_config)
            self.kept = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}


class EpochHistory(keras.callbacks.Callback):
    """history.csv: a row per finished epoch, numbered from 1 as on screen, the file
    rewritten atomically after each, so a killed run leaves whole rows.

    With `keep_rows` (RESUME) the rows already there stay; an epoch that is run again
    after an interruption replaces its row.
    """

    def __init__(self, path: Path, keep_rows: bool):
        super().__init__()
        self.path = path
        self.rows: list[dict] = []
        if keep_rows and path.is_file():
            with path.open(newline="") as rows:
                self.rows = list(csv.DictReader(rows))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in sorted((logs or {}).items())}}
        self.rows = [r for r in self.rows if int(r["epoch"]) != epoch + 1] + [row]
        with runs.atomic_path(self.path) as tmp, tmp.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(self.rows)


def best_epoch(history: Path) -> dict[str, float]:
    """The row of history.csv with the best MONITOR, as numbers; {} when there is none.

    A resumed KEEP="best" run starts from it, so it keeps beating the same best.
    """
    if not history.is_file():
        return {}
    with history.open(newline="") as rows:
        scored = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(rows)
                  if row.get(MONITOR)]
    return max(scored, key=lambda row: row[MONITOR], default={})
