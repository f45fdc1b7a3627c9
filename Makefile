# `make test` is what CI runs; `make demo` trains and draws the offline demo.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test lint train visualize evaluate demo demo-evaluate demo-seeds cause cause-seeds \
	bench results clean

# What the scripts need; the tests' tools (requirements-dev.txt) come on top, for lint and test.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .

# --dist worksteal: a worker that runs out of tests takes the other's not yet started, so
# a few long tests cannot leave one core idle at the end (pytest-xdist >= 3.2).
test: lint
	$(PY) -m pytest -q -n 2 --dist worksteal

train: $(VENV)/.installed
	$(PY) train_cam.py

visualize: $(VENV)/.installed
	$(PY) visualize_cam.py

evaluate: $(VENV)/.installed
	$(PY) evaluate_cam.py

# The offline demo: generated data, a small backbone trained from scratch, its CAM grid.
demo: $(VENV)/.installed
	$(PY) train_cam.py --PRESET=demo
	$(PY) visualize_cam.py --PRESET=demo
	@echo "demo figure: outputs/demo/heatmaps.png"

# The leaderboard's seven methods, camlab/report/results.py's LEADERBOARD_METHODS (METHOD=all
# has every method and takes far longer: docs/evaluation.md).
SEED_METHODS ?= cam,gradcam,gradcam++,scorecam,layercam,eigencam,saliency
demo-evaluate: $(VENV)/.installed
	$(PY) evaluate_cam.py --PRESET=demo --METHOD=$(SEED_METHODS)

# The training seed moves the maps more than the images do: the demo trained with SEEDS,
# each run scored with SEED_METHODS on SEED_IMAGES images, then
# outputs/demo_sN/seeds_leaderboard_first<SEED_IMAGES>.json and .md.
SEEDS ?= 1 2 3
SEED_IMAGES ?= 300  # the first 300 validation images of each run: about 2 minutes a run
demo-seeds: $(VENV)/.installed
	for seed in $(SEEDS); do \
	  test -f outputs/demo_s$$seed/model.keras || \
	    $(PY) train_cam.py --PRESET=demo --SEED=$$seed --RUN_NAME=demo_s$$seed || exit 1; \
	done
	$(PY) evaluate_cam.py --PRESET=demo --RUN_NAME='demo_s*' --METHOD=$(SEED_METHODS) \
	  --MAX_IMAGES=$(SEED_IMAGES)

# The known-cause benchmark (docs/known_cause.md): tiny_vgg (the demo's network at half the
# channels) trained on cam_shapes/cause, whose label is a small shape beside a larger
# distractor, and on cam_shapes/shortcut, whose corner marker names the label; its control
# is trained the same way on cam_shapes/shortcut_10, whose markers are drawn without
# looking at the label.
# Each is scored with SEED_METHODS: outputs/cause/leaderboard_first300.md and
# outputs/shortcut/leaderboard_first250.md (the presets' MAX_IMAGES).
cause: $(VENV)/.installed
	$(PY) train_cam.py --PRESET=cause
	$(PY) evaluate_cam.py --PRESET=cause --METHOD=$(SEED_METHODS)
	$(PY) train_cam.py --PRESET=shortcut
	$(PY) train_cam.py --PRESET=shortcut --DATASET=cam_shapes/shortcut_10 \
	  --RUN_NAME=shortcut_control
	$(PY) evaluate_cam.py --PRESET=shortcut --METHOD=$(SEED_METHODS)

# The cause board across training SEEDS, each run scored on its first SEED_IMAGES images as
# demo-seeds does: outputs/cause_sN/seeds_leaderboard_first<SEED_IMAGES>.json and .md.
cause-seeds: $(VENV)/.installed
	for seed in $(SEEDS); do \
	  test -f outputs/cause_s$$seed/model.keras || \
	    $(PY) train_cam.py --PRESET=cause --SEED=$$seed --RUN_NAME=cause_s$$seed || exit 1; \
	done
	$(PY) evaluate_cam.py --PRESET=cause --RUN_NAME='cause_s*' --METHOD=$(SEED_METHODS) \
	  --MAX_IMAGES=$(SEED_IMAGES)

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/bench_cam.py

# Copies the result files of the runs above from outputs/ into docs/results/ (with machine,
# date and command) and renders the result tables of README.md and docs/*.md from them
# (camlab/report/results.py).
results: $(VENV)/.installed
	$(PY) -m camlab.report.results

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
