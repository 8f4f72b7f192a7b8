# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv when missing
# and install the pinned dependencies from requirements.txt plus this package (editable).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# DDS stays on this machine unless the user said otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: demo test install clean help

help:
	@echo "make demo   - install if needed, replay synthetic data through the nodes, print results, write demo_out/"
	@echo "make test   - install if needed, run the test suite"
	@echo "make install- create .venv and install pinned dependencies"

install: $(STAMP)

$(STAMP): requirements.txt setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/spacenav demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo_out build *.egg-info
