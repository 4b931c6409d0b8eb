# Two entry points: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export TRANSFORMERS_VERBOSITY := error
export HF_HUB_OFFLINE := 1

.PHONY: demo test test-fast env clean reproduce-mini

$(STAMP): pyproject.toml constraints-cpu.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# CPU set-up path: the constraints file pins the CPU torch wheel; the package itself asks for a range.
	$(PY) -m pip install -q -c constraints-cpu.txt torch
	$(PY) -m pip install -q -c constraints-cpu.txt -e '.[dev]'
	@touch $(STAMP)

env: $(STAMP)

BENCH_DIR ?= runs/benchmarks/synthetic-mmvp

demo: $(STAMP)
	@test -f $(BENCH_DIR)/Questions.csv || $(PY) -m genhancer_evaluators.synthetic_mmvp $(BENCH_DIR) --pairs 5
	$(VENV)/bin/genhancer run recipes/demo.yaml --output-dir $(DEMO_DIR) --overwrite --set eval.0.params.root=$(BENCH_DIR)
	@echo "Demo finished."
	@echo "  enhanced encoder (Hugging Face layout): $(DEMO_DIR)/export"
	@echo "  before/after evaluation:                $(DEMO_DIR)/eval/mmvp_vlm/ (table.txt, mmvp_vlm.png)"
	@echo "  reconstructions:                        $(DEMO_DIR)/stage2/reconstructions.png"
	@echo "  run summary:                            $(DEMO_DIR)/run.json"

test: $(STAMP)
	$(PY) -m pytest -q

# Skips the end-to-end runs (marked slow); CI runs everything.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Every miniature experiment, 2 seeds, then docs/mini-replication.md (about 45 min on 2 cores).
reproduce-mini: $(STAMP)
	$(PY) -m genhancer_miniature.reproduce --runs runs/mini --doc docs/mini-replication.md

clean:
	rm -rf $(VENV) runs .pytest_cache
