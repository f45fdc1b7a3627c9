"""camlab.datasets.data: the download-host probe and the manual archives, offline."""

from __future__ import annotations

import tensorflow_datasets as tfds

from camlab.datasets import data


def test_host_probe_fails_on_a_closed_local_port():
    assert data.host_reachable("127.0.0.1", port=9, timeout=1.0) is False


def test_manual_archive_table_matches_tfds_registry():
    registered = {info.filename: int(info.size)
                  for info in tfds.builder_cls("imagenette").url_infos.values()}
    for archive, size in data.MANUAL_ARCHIVES.values():
        assert registered[archive] == size
