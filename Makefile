# gradopt — set up, run the main job, run the tests. Every target creates .venv when missing.
# The environment is built from requirements.lock (exact versions and hashes); `make lock`
# refreshes it from pyproject.toml's ranges.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
WHEELS := /opt/wheels
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup system lock demo test test-seeds quick-bench clean

setup: $(STAMP)

# Debian packages for rendering (abc2midi: ABC->MIDI; fluidsynth + soundfont: MIDI->WAV). Optional:
# without them gradopt falls back to music21 for MIDI and says what to install for WAV.
system:
	@if ! command -v abc2midi >/dev/null || ! command -v fluidsynth >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq abcmidi fluidsynth timgm6mb-soundfont >/dev/null) \
	      || echo "warning: could not install abcmidi/fluidsynth; MIDI falls back to music21, WAV is unavailable"; \
	  else echo "note: run 'sudo apt-get install abcmidi fluidsynth timgm6mb-soundfont' for MIDI/WAV rendering"; fi; \
	fi

$(STAMP): pyproject.toml $(LOCK)
	$(MAKE) system
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q pip==$(PIP_VERSION)
	$(BIN)/pip install -q --require-hashes --find-links $(WHEELS) -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Re-resolve pyproject.toml's ranges (with the dev extra) to exact versions and hashes.
lock: setup
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --extra dev --find-links $(WHEELS) \
	  --override requirements/lock-overrides.txt --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --generate-hashes --custom-compile-command "make lock" -q -o $(LOCK)

demo: setup
	$(BIN)/gradopt demo --work runs/demo

# The whole suite, then its randomised (hypothesis) tests again under two fresh random seeds,
# without the example database, so a derandomised or replayed run cannot hide a flaky property.
test: setup
	$(BIN)/pytest -q
	$(MAKE) test-seeds

test-seeds: setup
	@for s in $$($(BIN)/python -c 'import random; print(random.randrange(2**32), random.randrange(2**32))'); do \
	  echo "hypothesis tests, --hypothesis-seed=$$s"; \
	  $(BIN)/pytest -q -p no:cacheprovider -m hypothesis --hypothesis-seed=$$s \
	    --hypothesis-profile=fresh || exit 1; \
	done

quick-bench: setup
	$(BIN)/python benchmarks/rating_efficiency.py --quick
	$(BIN)/python benchmarks/ascent.py --quick
	$(BIN)/python benchmarks/edit_ranking.py --quick

clean:
	rm -rf $(VENV) runs .pytest_cache
