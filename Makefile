# Two commands matter:  `make demo` (set up a fresh Debian host and convert a generated model) and
# `make test` (set up, then run the unit and end-to-end tests; this is what .ci/run calls).
PYTHON ?= python3
ORCH   := $(PYTHON) -m orchestrator
STACK  ?= tf2
DEMO   ?= demo-out

.PHONY: help install engine base images demo test test-tools unit e2e e2e-cluster robustness lock bench bench-swarm clean

help:
	@echo "make demo   - install, start a Docker engine, build images, convert a generated Keras model"
	@echo "make test   - install, start a Docker engine, run tests/unit, tests/e2e and tests/robustness (builds images)"
	@echo "make unit   - unit tests only (no Docker)"
	@echo "make robustness - the bad-input corpus only (tests/robustness: every format, OUTPUT_DIR; prints a tally)"
	@echo "make lock STACK=tf2 - re-resolve images/STACK/requirements.lock with hashes"
	@echo "make bench  - time conversions against bench/targets.json (bench/results.json, bench/results.md)"
	@echo "make bench-swarm - batch throughput, local -j 2 against a two-node swarm on this machine (bench/swarm.md)"
	@echo "make e2e-cluster - only the Swarm end-to-end tests (one-node and two-node clusters made here)"

install:
	$(PYTHON) -m pip install -q --root-user-action=ignore -e '.[test]'

engine:
	sh scripts/engine-up.sh

base: engine install
	$(ORCH) images base

# the stack images, two builds at once (much of a build waits on the network and the disk); BUILD_JOBS=1: one by one
BUILD_JOBS ?= 2
images: engine install
	$(ORCH) images build -j $(BUILD_JOBS)

demo: images
	rm -rf $(DEMO)
	$(ORCH) sample keras $(DEMO)/model --kind cnn
	$(ORCH) convert keras $(DEMO)/model/model.h5 $(DEMO)/float
	$(ORCH) convert keras $(DEMO)/model/model.h5 $(DEMO)/int8 --quantize int8 --calibration $(DEMO)/model/calibration.npy
	$(ORCH) sample ssd $(DEMO)/ssd --kind quant
	$(ORCH) convert ssd $(DEMO)/ssd/ssd_model.tar.gz $(DEMO)/ssd-uint8 --quantize uint8 --graphviz
	@$(PYTHON) -c "import json; v=json.load(open('$(DEMO)/int8/manifest.json'))['verification']; \
	  [print('keras int8:', o['name'], o['shape'], 'max abs err %.3g' % o['max_abs_err'], \
	  'rel %.3g' % o['max_rel_err'], 'passed' if o['passed'] else 'FAILED') for o in v['outputs']]"

# images first (one build, not one per test worker); the tests then run in 2 processes, one file per process at a
# time (--dist loadfile: a file's fixtures are made once), so one conversion's container start overlaps another's
TEST_WORKERS ?= 2
# the two-node Swarm test (about 7 min: node image, images save/load, two batches) runs in `make e2e-cluster`; `make
# test` keeps the one-node swarm tests (steps as services, live-task hardening, status, interrupt, timeout)
test: images test-tools
	$(PYTHON) -m pytest -v -rA -n $(TEST_WORKERS) --dist loadfile -m "not cluster" tests/unit tests/e2e tests/robustness

test-tools:
	sh scripts/test-tools.sh

unit: install
	$(PYTHON) -m pytest -q tests/unit

e2e: images test-tools
	$(PYTHON) -m pytest -v -n $(TEST_WORKERS) --dist loadfile tests/e2e

robustness: images
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests/robustness

bench: images
	$(PYTHON) bench/run.py

bench-swarm: images
	$(PYTHON) bench/swarm.py

e2e-cluster: images test-tools
	CI=true $(PYTHON) -m pytest -v -rA tests/e2e/test_e2e_swarm.py

lock:
	if [ "$(STACK)" = tf1 ]; then sh scripts/lock-tf1.sh; else sh scripts/lock.sh $(STACK); fi

clean:
	rm -rf $(DEMO) .pytest_cache *.egg-info
