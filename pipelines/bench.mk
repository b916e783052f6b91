# Benchmarks print figures and ratios against a baseline run in the same process; they never assert timing.
# bench_dream_cache.py reads a Table 1 run's experience model and policy: `bench-dream-cache`.
BENCH_SELF_CONTAINED = $(filter-out bench/bench_ray_rollouts.py bench/bench_dream_cache.py,\
                                    $(wildcard bench/bench_*.py))
bench: venv
	@for b in $(sort $(BENCH_SELF_CONTAINED)); do echo "== $$b"; $(PY) $$b || exit 1; done
	@$(MAKE) --no-print-directory bench-ray bench-trl bench-dream-cache

# Our GRPO step against TRL's GRPOTrainer on tiny:1m and tiny:10m (about 6 minutes on 2 cores).
.PHONY: bench-trl bench-dream-cache
bench-trl: venv
	@echo "== bench/grpo_vs_trl.py"
	@OMP_NUM_THREADS=1 $(PY) bench/grpo_vs_trl.py --threads 1

# The dream env's transition cache, on the experience model and SFT policy of `make table1`.
TABLE1_DIR ?= runs/table1
bench-dream-cache: venv
	@if [ -d $(TABLE1_DIR)/em/full ] && [ -d $(TABLE1_DIR)/seed0/sft ]; then \
	  echo "== bench/bench_dream_cache.py"; \
	  OMP_NUM_THREADS=1 $(PY) bench/bench_dream_cache.py --em $(TABLE1_DIR)/em/full \
	    --policy $(TABLE1_DIR)/seed0/sft --tasks $(TABLE1_DIR)/pool_tasks.parquet --threads 1; \
	else echo "== bench/bench_dream_cache.py skipped: it needs a Table 1 run in $(TABLE1_DIR) (make table1)"; fi

# train-agent's rollouts with the in-process batch env vs Ray with 1 and 2 actors, on a local Ray
# (num_cpus 2); this workload takes about 1.5 minutes on 2 cores.
BENCH_RAY_ARGS ?= --rounds 3 --iterations 2 --batch-tasks 4 --group 2 --turns 5 --ray-cpus 2
.PHONY: bench-ray
bench-ray: venv
	@echo "== bench/bench_ray_rollouts.py $(BENCH_RAY_ARGS)"
	@OMP_NUM_THREADS=1 $(PY) bench/bench_ray_rollouts.py $(BENCH_RAY_ARGS)
