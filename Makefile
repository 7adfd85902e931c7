# Two commands on a fresh machine:
#   make demo   set up .venv, then train and evaluate the demo detector and segmentor
#   make test   set up .venv, then run the test suite
.PHONY: setup demo test bench clean

setup:
	@bash scripts/setup_env.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@bash scripts/run_tests.sh

bench: setup
	@.venv/bin/python tools/benchmark.py

clean:
	rm -rf work_dirs data/demo .pytest_cache
