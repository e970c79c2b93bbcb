# The README's two commands: `make demo` and `make test`. Each creates .venv on first use.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: demo test bench

# torchattacks is the independent reference for the attack tests; its metadata asks for
# torchvision, which it does not import and which has no CPU build, hence --no-deps.
# imagecorruptions-imaug ships the frost textures of the reference generator; only its files
# are read, hence --no-deps as well.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'
	$(VENV)/bin/python -m pip install --quiet --no-deps -c constraints.txt torchattacks imagecorruptions-imaug
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/robustrain demo

# The tests run on every core, one torch thread each (pytest-xdist; whole modules per worker, slow
# modules first: tests/conftest.py), and the 10 slowest are listed so that the suite's time stays watched.
test: $(STAMP)
	$(VENV)/bin/ruff check --quiet robustrain tests scripts bench examples
	OMP_NUM_THREADS=1 $(VENV)/bin/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --durations=10

bench: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(VENV)/bin/python bench/speed.py --out docs/results/bench.md
	$(VENV)/bin/python bench/peers.py --channels-last --out docs/results/peers.md
