# Benchmarks print figures and ratios against a baseline run in the same process; they never assert timing.
bench: venv
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
