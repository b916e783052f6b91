# Benchmarks print figures and ratios against a baseline run in the same process; they never assert timing.
bench: venv
	@for b in $(sort $(filter-out bench/bench_ray_rollouts.py,$(wildcard bench/bench_*.py))); do echo "== $$b"; $(PY) $$b || exit 1; done
	@$(MAKE) --no-print-directory bench-ray

# train-agent's rollouts with the in-process batch env vs Ray with 1 and 2 actors, on a local Ray
# (num_cpus 2); this workload takes about 1.5 minutes on 2 cores.
BENCH_RAY_ARGS ?= --rounds 3 --iterations 2 --batch-tasks 4 --group 2 --turns 5 --ray-cpus 2
.PHONY: bench-ray
bench-ray: venv
	@echo "== bench/bench_ray_rollouts.py $(BENCH_RAY_ARGS)"
	@OMP_NUM_THREADS=1 $(PY) bench/bench_ray_rollouts.py $(BENCH_RAY_ARGS)
