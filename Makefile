# `make demo` and `make test` each set themselves up on a fresh machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench setup build-deps clean audio-model assets screenshots

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

# What rebuilding the bundled data needs on top (music21); CI installs it to run those tests too.
build-deps: $(STAMP)
	$(PY) -m pip install -q -r requirements-build.txt

demo: $(STAMP)
	$(PY) app.py

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) bench/generation.py

# The pages' example files (assets/audio, assets/digits; assets/SOURCE.md): needs data/melodies8k
# (`make audio-model` renders it) and Debian's espeak-ng.
assets: $(STAMP)
	$(PY) scripts/make_assets.py

# The README's pictures (docs/screenshots): every page with one example clicked, checked by axe-core.
screenshots: $(STAMP)
	$(PY) scripts/screenshots.py --axe

# The bundled audio model, rebuilt from nothing: render the chorale melodies (needs Debian's
# fluidsynth and fluid-soundfont-gm), train 4,751 steps at batch 8 (as the bundle was: 2 h on a
# 2-core CPU), go on at batch 32 to AUDIO_STEPS (the bundle's 5,249 steps took 2.4 min on one H100;
# about 7 h on 2 CPU cores), bundle that step. A run already in runs/melodies8k is resumed.
AUDIO_STEPS ?= 10000
MELODIES := data/melodies8k
audio-model: build-deps
	$(PY) scripts/render_chorales.py --out $(MELODIES) --sample-rate 8000 --melody --limit 160 \
		--tempo-scale 0.75 --programs 19 40 48 68 71 73 0 56
	if [ ! -f runs/melodies8k/latest ]; then \
		$(PY) -m core.train --config configs/melodies8k.json --run-dir runs/melodies8k --set train.max_steps=4751; \
	fi
	$(PY) -m core.train --run-dir runs/melodies8k --resume --set train.batch_size=32 \
		--set train.max_steps=$(AUDIO_STEPS)
	$(PY) scripts/bundle.py export runs/melodies8k checkpoints/melodies-wavenet --test --step $(AUDIO_STEPS) \
		--title "Bach melodies, 8 kHz" \
		--data "the soprano lines of the first 160 Bach chorales of music21's corpus, rendered by fluidsynth \
		(FluidR3_GM: organ, violin, strings, oboe, clarinet, flute, piano, trumpet) at 8 kHz, 3/4 tempo; \
		128 train / 16 valid / 16 test chorales, 1.54 h of train audio (data/melodies8k/SOURCE.md)" \
		--command "make audio-model AUDIO_STEPS=$(AUDIO_STEPS)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
