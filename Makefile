# Everything a fresh machine needs: `make demo` and `make test` install into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench models paper clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1 || $(BIN)/python -m pip install torch torchvision
	$(BIN)/python -m pip install -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/colorizer demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/targets.py
	$(BIN)/python bench/infer.py
	$(BIN)/python bench/models.py
	$(BIN)/python bench/demo.py
	$(BIN)/python bench/study_load.py

clean:
	rm -rf $(VENV) build *.egg-info
