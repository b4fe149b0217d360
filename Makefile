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

.PHONY: setup system abcjs lock demo test test-seeds quick-bench clean

setup: $(STAMP)

# Debian packages: abc2midi (ABC->MIDI), fluidsynth + soundfont (MIDI->WAV), chromium + chromedriver
# (the browser tests of the report and the rating page). Optional: without them gradopt falls back
# to music21 for MIDI, says what to install for WAV, and the browser tests skip with the reason.
SYSTEM_PKGS := abcmidi fluidsynth timgm6mb-soundfont chromium chromium-driver
system:
	@if ! command -v abc2midi >/dev/null || ! command -v fluidsynth >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PKGS) >/dev/null) \
	      || echo "warning: could not install $(SYSTEM_PKGS); MIDI falls back to music21, WAV and the browser tests are unavailable"; \
	  else echo "note: run 'sudo apt-get install $(SYSTEM_PKGS)' for MIDI/WAV rendering and the browser tests"; fi; \
	fi

# abcjs (sheet music and playback in the HTML report and the rating page), from npm into the venv;
# pages inline it, so nothing is fetched at view time. Optional: without npm, pages show ABC text.
ABCJS_VERSION := 6.7.2
ABCJS := $(VENV)/npm/node_modules/abcjs/dist/abcjs-basic-min.js
abcjs: $(ABCJS)
$(ABCJS):
	@if command -v npm >/dev/null; then \
	  npm install -s --no-audit --no-fund --prefix $(VENV)/npm abcjs@$(ABCJS_VERSION) \
	    || echo "warning: npm could not install abcjs; pages will show ABC text instead of sheet music"; \
	else echo "note: install Node.js/npm for sheet music in pages (abcjs)"; fi

$(STAMP): pyproject.toml $(LOCK)
	$(MAKE) system
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q pip==$(PIP_VERSION)
	$(BIN)/pip install -q --require-hashes --find-links $(WHEELS) -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/python -m pip check
	-$(MAKE) abcjs
	touch $(STAMP)

# Re-resolve pyproject.toml's ranges (with the dev extra) to exact versions and hashes.
# Needs only a venv with uv (not the installed project: pyproject.toml may name packages the old
# lock lacks).
lock:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
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
