# `make demo` and `make test` each set themselves up on a fresh machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench setup build-deps clean audio-model speech-model assets screenshots

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

# The bundled speech model, rebuilt from nothing: render the speech corpus (needs Debian's festival,
# festvox-kallpc16k, festvox-us-slt-hts and espeak-ng; under 2 min on a quiet 2-core machine), then, at
# 8 kHz and batch 8, in three stages:
# 1. fine-tune the bundled melody WaveNet on it (configs/speech8k_wavenet.json, train.init_from) for
#    SPEECH_STAGE1 steps (runs/speech8k);
# 2. go on from that step as a pitch-conditioned model (each file's pitch register is its class, core.pitch;
#    the new class embedding starts at zero), with silences over 0.1 s cut to 0.1 s (data.max_silence) and
#    averaged weights (train.ema), at lr 0.001 to SPEECH_ANNEAL, then 0.0003 to SPEECH_STAGE2
#    (runs/speech8k-pitch-short);
# 3. grow that step's model from 32 to 64 residual and dilation channels (core.models.wavenet_widen: it
#    starts out computing what the narrow one did) and train it at lr 0.001 to SPEECH_STEPS (runs/speech8k-wide);
# bundle that step with its test NLL, and measure how its continuations of 16 held-out clips and of the Audio
# page's spoken example compare with the melody model's (docs/speech_measure*.json). Runs already there are
# resumed. On 2 cores stages 1-2 take about 1.1 s a step, stage 3 about 1.5 s.
SPEECH_STAGE1 ?= 3000
SPEECH_ANNEAL ?= 3500
SPEECH_STAGE2 ?= 4000
SPEECH_STEPS ?= 500
SPEECH := data/speech16k
SPEECH1 := runs/speech8k/checkpoints/step_$(shell printf %08d $(SPEECH_STAGE1))
SPEECH2 := runs/speech8k-pitch-short/checkpoints/step_$(shell printf %08d $(SPEECH_STAGE2))
PITCH := --set model.n_classes=6 --set model.classes_from=pitch --set data.classes=pitch \
	--set data.max_silence=0.1 --set train.ema=0.998 --set train.keep_every=250
speech-model: $(STAMP)
	$(PY) scripts/render_speech.py --out $(SPEECH)
	if [ ! -f runs/speech8k/latest ]; then \
		$(PY) -m core.train --config configs/speech8k_wavenet.json --run-dir runs/speech8k \
			--set train.max_steps=$(SPEECH_STAGE1); \
	elif [ ! -d $(SPEECH1) ]; then \
		$(PY) -m core.train --run-dir runs/speech8k --resume --set train.max_steps=$(SPEECH_STAGE1); \
	fi
	if [ ! -f runs/speech8k-pitch-short/latest ]; then \
		$(PY) -m core.train --config configs/speech8k_wavenet.json --run-dir runs/speech8k-pitch-short $(PITCH) \
			--set train.init_from=$(SPEECH1) --set train.max_steps=$(SPEECH_ANNEAL); \
	fi
	if [ ! -d $(SPEECH2) ]; then \
		$(PY) -m core.train --run-dir runs/speech8k-pitch-short --resume --set train.max_steps=$(SPEECH_ANNEAL); \
		$(PY) -m core.train --run-dir runs/speech8k-pitch-short --resume --set train.lr=0.0003 \
			--set train.max_steps=$(SPEECH_STAGE2); \
	fi
	if [ ! -f runs/speech8k-wide/latest ]; then \
		$(PY) -m core.train --config runs/speech8k-pitch-short/config.json --run-dir runs/speech8k-wide \
			--set model.residual_channels=64 --set model.dilation_channels=64 --set train.lr=0.001 \
			--set train.init_from=$(SPEECH2) --set train.max_steps=$(SPEECH_STEPS); \
	else \
		$(PY) -m core.train --run-dir runs/speech8k-wide --resume --set train.max_steps=$(SPEECH_STEPS); \
	fi
	$(PY) scripts/bundle.py export runs/speech8k-wide checkpoints/speech-wavenet --test --step $(SPEECH_STEPS) \
		--title "English speech, 8 kHz" --notes docs/speech_card.md \
		--data "3.0 h of English sentences spoken by 16 synthetic voice settings (Festival's kal diphone and \
		slt HTS voices, eSpeak NG variants) rendered by scripts/render_speech.py at 16 kHz, heard at 8 kHz, \
		silences over 0.1 s cut to 0.1 s, each file's pitch register (6 bands of median f0) its class; \
		valid and test are spoken by voice \
		settings never heard in training ($(SPEECH)/SOURCE.md); fine-tuned from melodies-wavenet, then grown \
		from 32 to 64 channels" \
		--command "make speech-model SPEECH_STAGE1=$(SPEECH_STAGE1) SPEECH_ANNEAL=$(SPEECH_ANNEAL) \
		SPEECH_STAGE2=$(SPEECH_STAGE2) SPEECH_STEPS=$(SPEECH_STEPS)"
	$(PY) scripts/speech_measure.py --checkpoints checkpoints/speech-wavenet checkpoints/melodies-wavenet \
		--wavs $(SPEECH)/test --clips 16 > docs/speech_measure.json
	$(PY) scripts/speech_measure.py --checkpoints checkpoints/speech-wavenet checkpoints/melodies-wavenet \
		--wavs assets/audio/spoken.wav > docs/speech_measure_spoken.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
