# Two entry points: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export TRANSFORMERS_VERBOSITY := error
export HF_HUB_OFFLINE := 1

.PHONY: demo demo-again test test-fast env clean reproduce-mini

$(STAMP): pyproject.toml constraints-cpu.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# CPU set-up path: the constraints file pins the CPU torch wheel; the package itself asks for a range.
	$(PY) -m pip install -q -c constraints-cpu.txt torch
	$(PY) -m pip install -q -c constraints-cpu.txt -e '.[dev]'
	@touch $(STAMP)

env: $(STAMP)

# The miniature replication's main experiment: pretrains the tiny "original
# CLIP" once (cached in ~/.cache/genhancer), runs GenHancer on it and prints
# the original vs enhanced probe table with its legend. Interrupted? `make demo`
# again continues where it stopped; `make demo-again` starts over.
# The run prints the table when it finishes; a finished demo prints it again here.
demo: export GENHANCER_RESUME_HINT = make demo
demo: $(STAMP)
	@if [ -f $(DEMO_DIR)/run.json ] && grep -q '"completed": true' $(DEMO_DIR)/run.json; then \
		echo "The demo already ran in $(DEMO_DIR) (make demo-again starts over):"; \
		echo; cat $(DEMO_DIR)/eval/shapes_probe/table.txt; \
	elif [ -d $(DEMO_DIR) ]; then \
		$(VENV)/bin/genhancer run recipes/experiments/main.yaml --output-dir $(DEMO_DIR) --resume; \
	else \
		$(VENV)/bin/genhancer run recipes/experiments/main.yaml --output-dir $(DEMO_DIR); \
	fi
	@echo
	@echo "Demo finished."
	@echo "  original vs enhanced:                   $(DEMO_DIR)/eval/shapes_probe/table.txt (and shapes_probe.png: accuracies, chance, differences)"
	@echo "  enhanced encoder (Hugging Face layout): $(DEMO_DIR)/export"
	@echo "  reconstructions:                        $(DEMO_DIR)/stage1/reconstructions.png, $(DEMO_DIR)/stage2/reconstructions.png"
	@echo "      (they look like coloured noise with faint blobs where the shapes are, and that is expected: a tiny"
	@echo "       denoiser trained for minutes reconstructs poorly; the encoder gains from the pressure to"
	@echo "       reconstruct, not from good reconstructions, the paper's 'imperfect generative models' point)"
	@echo "  run summary:                            $(DEMO_DIR)/run.json"

demo-again: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(MAKE) demo

test: $(STAMP)
	$(PY) -m pytest -q

# Skips the end-to-end runs (marked slow); CI runs everything.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Every miniature experiment, the Fig. 1 axes, the DIVA-style arm and the trade-off sweep, 3 seeds,
# then docs/mini-replication.md (about 77 minutes on 2 idle cores, two runs at a time; finished runs
# are reused, so it can be interrupted).
reproduce-mini: $(STAMP)
	$(PY) tools/reproduce_mini.py --recipes recipes --runs runs/mini --doc docs/mini-replication.md

clean:
	rm -rf $(VENV) runs .pytest_cache
