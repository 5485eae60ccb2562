# Every target creates .venv and installs textcls into it with the pinned versions in
# constraints.txt (torch 2.13.0 CPU on the project's machines), so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := test,plot,tune,bench,zh,serve,export

.PHONY: install demo test test-slow lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/textcls train --output runs/demo --set output.overwrite=true
	$(BIN)/textcls eval runs/demo data/ag_news_demo/test.csv

# `make test` leaves out the tests marked slow (about 4 minutes on 2 cores); CI runs both.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --timeout 600 -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --timeout 900 -m slow

lint: $(STAMP)
	$(BIN)/python -m ruff check textcls tests bench

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
