# gradopt — set up, run the main job, run the tests. Every target creates .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup system demo test quick-bench clean

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

$(STAMP): pyproject.toml
	$(MAKE) system
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/gradopt demo --work runs/demo

test: setup
	$(BIN)/pytest -q

quick-bench: setup
	$(BIN)/python benchmarks/rating_efficiency.py --quick
	$(BIN)/python benchmarks/ascent.py --quick
	$(BIN)/python benchmarks/edit_ranking.py --quick

clean:
	rm -rf $(VENV) runs .pytest_cache
