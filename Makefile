# The README's two commands: `make demo` and `make test`. Each creates .venv on first use.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: demo test

# torchattacks is the independent reference for the attack tests; its metadata asks for
# torchvision, which it does not import and which has no CPU build, hence --no-deps.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'
	$(VENV)/bin/python -m pip install --quiet --no-deps -c constraints.txt torchattacks
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/robustrain demo

test: $(STAMP)
	$(VENV)/bin/ruff check --quiet --select F,E9 robustrain tests scripts
	$(VENV)/bin/python -m pytest -q
