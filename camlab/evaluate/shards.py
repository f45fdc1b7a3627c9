"""Evaluation split across processes and machines: per-image scores of one shard on
disk, and their merge into the scores of the whole split.

evaluate_cam.py --SHARD=i/n scores batches i, i + n, i + 2n, ... of the split: the same
batches, image for image, as a run of the whole split, and every random number is keyed
by the image's index in the split (camlab.core.randomness), so a merge gives the numbers of
one unsharded run. A shard is outputs/<run>/shards/shard_<i>_of_<n>.npz: every method's
per-image scores (evaluation.score_batches), the settings that change a score
("identity"), and its seconds. One sharded evaluation per run folder at a time: a new
one replaces the shard files of the last.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from camlab.core import runs
from camlab.errors import CamError

FOLDER = "shards"
_SEPARATOR = "|"  # between a method and its score's key inside the npz


def shard_path(run_dir: Path, index: int, count: int) -> Path:
    return Path(run_dir) / FOLDER / f"shard_{index}_of_{count}.npz"


def save(run_dir: Path, identity: dict[str, Any], index: int, count: int,
         scores: dict[str, dict[str, np.ndarray]], seconds: float) -> Path:
    """Writes shard `index` of `count` (atomically) and returns its path."""
    path = shard_path(run_dir, index, count)
    arrays = {f"{method}{_SEPARATOR}{key}": value for method, part in scores.items()
              for key, value in part.items()}
    with runs.atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays, identity=json.dumps(identity, sort_keys=True),
                     seconds=seconds)
    print(f"saved {path}: shard {index} of {count}; merge with --MERGE_SHARDS={count} once "
          "all are done")
    return path


def _read(path: Path, identity: dict[str, Any], index: int, count: int
          ) -> tuple[dict[str, dict[str, np.ndarray]], float]:
    if not path.is_file():
        raise CamError(f"shard {index} of {count} is missing ({path}): run evaluate_cam.py "
                       f"with the same settings and --SHARD={index}/{count} first")
    with np.load(path) as stored:
        theirs = json.loads(str(stored["identity"]))
        if theirs != identity:
            differ = sorted(key for key in {*theirs, *identity}
                            if theirs.get(key) != identity.get(key))
            raise CamError(f"shard {index} of {count} ({path}) was scored with other "
                           f"settings ({', '.join(differ)}): score it again with these, or "
                           "merge with the settings it was scored with")
        scores: dict[str, dict[str, np.ndarray]] = {}
        for name in stored.files:
            if _SEPARATOR in name:
                method, key = name.split(_SEPARATOR, 1)
                scores.setdefault(method, {})[key] = stored[name]
        return scores, float(stored["seconds"])


def merged(run_dir: Path, identity: dict[str, Any], count: int
           ) -> tuple[dict[str, dict[str, np.ndarray]], float]:
    """The scores of the whole split from its `count` shards, images in split order, and
    the shards' seconds summed; one CamError for a missing, mismatched or overlapping
    shard."""
    parts = [_read(shard_path(run_dir, index, count), identity, index, count)
             for index in range(count)]
    out = {}
    for method in parts[0][0]:
        joined = {key: np.concatenate([part[0][method][key] for part in parts])
                  for key in parts[0][0][method]}
        order = np.argsort(joined["index"], kind="stable")
        if len(np.unique(joined["index"])) != len(order):
            raise CamError(f"the shards in {Path(run_dir) / FOLDER} overlap: some images are "
                           "in two of them; score every shard again with one SHARD count")
        out[method] = {key: value[order] for key, value in joined.items()}
    return out, sum(part[1] for part in parts)
