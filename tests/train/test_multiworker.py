"""STRATEGY="multiworker": worker processes on this machine train as one cluster, only the
chief writes, and a worker that dies stops the others with one line instead of a hang."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import train_cam
from camlab.core import runs, settings
from camlab.datasets import shapes
from camlab.errors import CamError
from camlab.train import training

TRAIN_AS_WORKER = Path(__file__).with_name("train_as_worker.py")
RUN_FILES = {"config.json", "curves.png", "history.csv", "model.keras", "weights.weights.h5"}


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
    """A prepared cam_shapes folder (160 training, 40 validation images), made once here:
    two workers preparing one folder at the same time would race."""
    data_dir = tmp_path_factory.mktemp("shapes")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shapes, "TRAIN_SIZE", 160)
        patch.setattr(shapes, "VALIDATION_SIZE", 40)
        shapes.CamShapes(data_dir=str(data_dir)).download_and_prepare()
    return data_dir


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now, all different (each socket stays bound until all are)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def start_workers(tmp_path: Path, data_dir: Path, *args: str,
                  worker_timeout: int = 30) -> list[subprocess.Popen]:
    """Two workers of one cluster on 127.0.0.1, training the demo network, each with its
    own TF_CONFIG index and OUTPUT_DIR (tmp_path / "outputs<index>", as if on its own
    machine, so anything a worker writes shows). Their output goes to worker<index>.out
    and .err, and the weights each started and ended with to weights<index>.npz."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        argv = [sys.executable, str(TRAIN_AS_WORKER), str(tmp_path / f"weights{index}.npz"),
                "--PRESET=demo", "--EPOCHS=1", "--MIXED_PRECISION=float32",
                "--STRATEGY=multiworker", f"--WORKER_TIMEOUT={worker_timeout}",
                f"--DATA_DIR={data_dir}",
                f"--OUTPUT_DIR={tmp_path / f'outputs{index}'}", *args]
        with open(tmp_path / f"worker{index}.out", "w") as out, \
                open(tmp_path / f"worker{index}.err", "w") as err:
            # Without TF_CPP_MIN_LOG_LEVEL, which conftest sets: what a user would see.
            env = {name: value for name, value in os.environ.items()
                   if name != "TF_CPP_MIN_LOG_LEVEL"}
            workers.append(subprocess.Popen(argv, stdout=out, stderr=err, text=True,
                                            env={**env, "TF_CONFIG": json.dumps(tf_config)}))
    return workers


def finish(workers: list[subprocess.Popen], timeout: float) -> list[int]:
    """The workers' exit codes; kills them all if one is still running after `timeout` s."""
    deadline = time.monotonic() + timeout
    try:
        return [worker.wait(timeout=max(0.0, deadline - time.monotonic())) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def arrays(npz: Path, prefix: str) -> list[np.ndarray]:
    with np.load(npz) as saved:
        return [saved[f"{prefix}{i}"] for i in range(sum(k.startswith(prefix) for k in saved))]


def test_two_workers_train_as_one_and_only_the_chief_writes(tmp_path, shapes_data):
    workers = start_workers(tmp_path, shapes_data)
    codes = finish(workers, timeout=240)
    assert codes == [0, 0], [(tmp_path / f"worker{i}.err").read_text()[-2000:] for i in (0, 1)]

    # Worker 1 wrote nothing, not even its OUTPUT_DIR; the chief wrote the whole run.
    assert not (tmp_path / "outputs1").exists()
    run_dir = tmp_path / "outputs0" / "demo"
    assert {path.name for path in run_dir.iterdir()} == RUN_FILES
    config = runs.read_run_config(run_dir)
    assert config["replicas"] == 2
    assert "/job:worker/replica:0/task:1/device:CPU:0" in config["devices"]
    with (run_dir / "history.csv").open(newline="") as rows:
        assert [row["epoch"] for row in csv.DictReader(rows)] == ["1"]
    assert (tmp_path / "worker1.out").read_text().splitlines()[-1] == (
        f"worker 1 of 2 finished; the chief writes the run folder {tmp_path}/outputs1/demo/")

    # Both started from and ended with the same weights, bit for bit, batch
    # normalisation's moving statistics included (each worker sees half of every batch).
    chief, other = tmp_path / "weights0.npz", tmp_path / "weights1.npz"
    finals = arrays(chief, "final")
    assert len(finals) == 31  # small_vgg: 6 x (kernel, gamma, beta, mean, variance) + head
    for name in ("initial", "final"):
        for mine, theirs in zip(arrays(chief, name), arrays(other, name), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    moved = [np.abs(end - start).max() for end, start in
             zip(finals, arrays(chief, "initial"), strict=True)]
    assert min(moved) > 1e-4  # every weight trained, the moving statistics too

    # What the chief saved is what both workers ended with.
    saved = runs.load_trained_model(run_dir, config).get_weights()
    for mine, theirs in zip(saved, finals, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_a_worker_that_is_killed_stops_the_other_with_one_line(tmp_path, shapes_data):
    # A dead worker is given up on once its heartbeats have been missing for WORKER_TIMEOUT
    # seconds, or sooner if a connection to it breaks first.
    chief, other = start_workers(tmp_path, shapes_data, "--EPOCHS=100", worker_timeout=15)
    history = tmp_path / "outputs0" / "demo" / "history.csv"
    deadline = time.monotonic() + 180
    while not (history.is_file() and history.read_text().count("\n") >= 2):
        assert chief.poll() is None and other.poll() is None, "a worker stopped early"
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.1)
    # Mid-training, as `kill` or a scheduler stops a process. TensorFlow would catch
    # SIGTERM and train on; it stops the worker at once, like a crash.
    other.send_signal(signal.SIGTERM)
    killed = time.monotonic()
    assert finish([chief, other], timeout=60) == [1, -signal.SIGTERM]
    assert time.monotonic() - killed < 60
    [message] = (tmp_path / "worker0.err").read_text().splitlines()  # one line, no traceback
    assert message.startswith("train_cam.py: error: STRATEGY=\"multiworker\": worker 0 of 2 "
                              "lost contact with another worker (")
    assert "/job:worker/replica:0/task:1" in message  # names the worker that died
    assert message.endswith("start the same command on every machine in TF_CONFIG, each with "
                            "its own index, and check that they can reach one another")


@pytest.mark.parametrize("tf_config, message", [
    (None, "STRATEGY=\"multiworker\" needs the environment variable TF_CONFIG"),
    ("{cluster: 1}", "does not name a cluster and this worker's place in it (JSONDecodeError"),
    ('{"cluster": {"worker": ["a:1"]}}', "(KeyError: 'task')"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
     "(IndexError: 2)"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
     "(KeyError: 'chief')"),
])
def test_a_missing_or_broken_tf_config_is_one_clear_line(monkeypatch, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(CamError) as error:
        training.cluster_from_tf_config()
    assert message in str(error.value) and "\n" not in str(error.value)
    assert '"task": {"type": "worker", "index": 0}' in str(error.value)  # how to write it


@pytest.mark.parametrize("args, message", [
    (["--RESUME=True"], "RESUME=True cannot continue a STRATEGY=\"multiworker\" run"),
    (["--WORKER_TIMEOUT=0"], "WORKER_TIMEOUT=0 must be positive (seconds)"),
])
def test_multiworker_settings_are_checked_before_anything_starts(tmp_path, probes, args,
                                                                 message):
    with pytest.raises(SystemExit) as exit_info:
        train_cam.main(["--STRATEGY=multiworker", "--MIXED_PRECISION=float32",
                        f"--OUTPUT_DIR={tmp_path}", f"--DATA_DIR={tmp_path}", *args])
    assert message in str(exit_info.value.code)
    assert probes == [] and list(tmp_path.iterdir()) == []


GRAPH_ERROR = """Graph execution error:

Detected at node CollectiveReduceV2 defined at (most recent call last):
  File "train_cam.py", line 299, in <module>

  File "camlab/train/training.py", line 88, in reduce_one

Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks \
are unhealthy (stopped sending heartbeats):
/job:worker/replica:0/task:1
The error could be from a previous operation. Restart your program to reset.
\t [[{{node CollectiveReduceV2}}]] [Op:__inference_multi_step_on_iterator_3297]"""

GRPC_ERROR = """{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:\
worker/replica:0/task:0/device:CPU:0}} Collective ops is aborted by: recvmsg:Connection reset \
by peer
Additional GRPC error information from remote target /job:worker/replica:0/task:1 while \
calling /tensorflow.WorkerService/RecvBuf:
:UNKNOWN:Error received from peer  {grpc_status:14, grpc_message:"recvmsg:Connection reset \
by peer"} [Op:CollectiveReduceV2] name: """


def test_a_lost_worker_error_keeps_the_reason_without_the_graph_stack():
    with pytest.raises(CamError) as error, training.lost_workers("worker 0 of 2 lost"):
        raise tf.errors.UnavailableError(None, None, GRAPH_ERROR)
    assert str(error.value).startswith(
        "STRATEGY=\"multiworker\": worker 0 of 2 lost (UnavailableError: Collective ops is "
        "aborted by: Error reported from /job:worker/task:1: The following tasks are "
        "unhealthy (stopped sending heartbeats): /job:worker/replica:0/task:1); start the ")
    assert training.tensorflow_reason(GRPC_ERROR) == (
        "Collective ops is aborted by: recvmsg:Connection reset by peer "
        "(remote task /job:worker/replica:0/task:1)")
    with pytest.raises(ValueError), training.lost_workers("not this"):
        raise ValueError("a bug stays a traceback")


def test_a_run_interrupted_before_worker_timeout_existed_can_still_resume(tmp_path):
    """WORKER_TIMEOUT cannot change a training, so a config.json without it resumes."""
    config = settings.resolve(Path(train_cam.__file__), [f"--OUTPUT_DIR={tmp_path}",
                                                        "--RESUME=True"])
    run_dir = tmp_path / config["RUN_NAME"]
    (run_dir / "backup").mkdir(parents=True)
    older = {name: value for name, value in config.items() if name != "WORKER_TIMEOUT"}
    runs.write_json(run_dir / "config.json", {**older, "RESUME": False})
    assert train_cam.check_resume(config) == run_dir
    runs.write_json(run_dir / "config.json", {**older, "EPOCHS": config["EPOCHS"] + 1})
    with pytest.raises(CamError, match="cannot resume"):
        train_cam.check_resume(config)
