"""docs/notebooks/: each notebook runs top to bottom offline, and is committed with the
outputs of such a run, pictures included, so that GitHub shows them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "notebooks" / "explain_a_keras_model.ipynb"
DEAD_PROXY = "http://127.0.0.1:9"  # a closed port: any download fails at once


def execute(notebook: nbformat.NotebookNode, keras_home: Path) -> nbformat.NotebookNode:
    """Runs every cell in a fresh kernel whose working folder is the checkout (so `import
    camlab` is this one) and whose every download fails: through a proxy on a closed port,
    with an empty Keras cache. Raises nbclient's CellExecutionError on any error."""
    env = {**os.environ, "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY,
           "http_proxy": DEAD_PROXY, "https_proxy": DEAD_PROXY, "NO_PROXY": "",
           "KERAS_HOME": str(keras_home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     record_timing=False,
                                     resources={"metadata": {"path": str(ROOT)}})
    return client.execute(env=env)


def test_the_notebook_runs_offline_and_is_committed_with_its_pictures(tmp_path):
    committed = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in committed.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    pictures = [output for cell in code for output in cell.outputs
                if "image/png" in output.get("data", {})]
    assert len(pictures) >= 3  # the methods side by side, the overlay, the grid
    assert not [output for cell in code for output in cell.outputs
                if output.output_type == "error"]
    ran = execute(nbformat.read(NOTEBOOK, as_version=4), tmp_path / "keras")
    printed = "".join(output.get("text", "") for cell in ran.cells if cell.cell_type == "code"
                      for output in cell.outputs)
    assert "maxboxacc_v2" in printed and "centre" in printed
    assert not list((tmp_path / "keras").rglob("*.h5"))  # no weights were fetched


def test_the_committed_notebook_shows_no_tensorflow_log_lines():
    """TensorFlow's C++ log (oneDNN, CUDA stubs) is noise on a reader's screen: the
    committed outputs hold none of it, and the text calls the blog post "the post"."""
    committed = nbformat.read(NOTEBOOK, as_version=4)
    printed = "".join(output.get("text", "") for cell in committed.cells
                      if cell.cell_type == "code" for output in cell.outputs)
    assert not re.search(r"^[IWE]\d{4} |absl::InitializeLog|oneDNN custom operations",
                         printed, re.M)
    text = "".join(cell.source for cell in committed.cells if cell.cell_type == "markdown")
    assert "the seed" not in text.lower() and "the post" in text
