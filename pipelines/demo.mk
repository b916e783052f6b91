# The demo: the whole DreamGym chain on real TextWorld games with tiny models on CPU.
#   tasks → collect → ingest → annotate → train-em → eval-em → SFT → GRPO in the dream env
#   → GRPO in the real env (for comparison) → eval on held-out real games → REPORT.md
# Every stage writes an artifact with a manifest under $(DEMO_DIR); re-running skips the stages
# whose inputs and config are unchanged. DEMO_SCALE=full runs a larger version.
DEMO_DIR   ?= runs/demo
DEMO_SCALE ?= small
DEMO_CHALLENGE ?= tw-simple
ifeq ($(DEMO_SCALE),full)
  DEMO_TRAIN_SEEDS ?= 1-40
  DEMO_TEST_SEEDS  ?= 1001-1020
  DEMO_EPISODES    ?= 4
  DEMO_EM_BASE     ?= tiny:10m
  DEMO_EM_STEPS    ?= 1500
  DEMO_SFT_STEPS   ?= 400
  DEMO_ITERS       ?= 20
else
  DEMO_TRAIN_SEEDS ?= 1-8
  DEMO_TEST_SEEDS  ?= 1001-1004
  DEMO_EPISODES    ?= 3
  DEMO_EM_BASE     ?= tiny:1m
  DEMO_EM_STEPS    ?= 120
  DEMO_SFT_STEPS   ?= 80
  DEMO_ITERS       ?= 3
endif
D := $(DEMO_DIR)
RL_OPTS := --tasks $(D)/train_tasks.parquet --iterations $(DEMO_ITERS) --group-size 4 \
           --batch-tasks 4 --max-steps-per-episode 12 --seed 0

demo: venv
	@mkdir -p $(D)
	$(DG) tasks make --env textworld --challenge $(DEMO_CHALLENGE) --seeds $(DEMO_TRAIN_SEEDS) --split train --out $(D)/train_tasks.parquet
	$(DG) tasks make --env textworld --challenge $(DEMO_CHALLENGE) --seeds $(DEMO_TEST_SEEDS) --split test --out $(D)/test_tasks.parquet
	$(DG) collect --tasks $(D)/train_tasks.parquet --policy expert,mixed --epsilon 0.3 --episodes-per-task $(DEMO_EPISODES) --out $(D)/train_episodes.jsonl
	$(DG) collect --tasks $(D)/test_tasks.parquet --policy expert --episodes-per-task 1 --out $(D)/test_episodes.jsonl
	$(DG) ingest $(D)/train_episodes.jsonl --store $(D)/store
	$(DG) store info $(D)/store
	$(DG) annotate --store $(D)/store
	$(DG) train-em --store $(D)/store --base $(DEMO_EM_BASE) --max-steps $(DEMO_EM_STEPS) --batch-size 8 --max-length 768 --retrieval-k 2 --history 1 --out $(D)/em
	$(DG) eval-em --em $(D)/em --episodes $(D)/test_episodes.jsonl --max-episodes 2 --max-retries 0 --out $(D)/fidelity
	$(DG) train-agent --algo sft --store $(D)/store --base tiny:1m --max-steps $(DEMO_SFT_STEPS) --out $(D)/policy_sft
	$(DG) train-agent --algo grpo --init $(D)/policy_sft --env dream:$(D)/em --store $(D)/store $(RL_OPTS) --out $(D)/policy_dream
	$(DG) train-agent --algo grpo --init $(D)/policy_sft --env textworld $(RL_OPTS) --out $(D)/policy_real
	$(DG) eval --policy $(D)/policy_sft --tasks $(D)/test_tasks.parquet --out $(D)/eval_sft
	$(DG) eval --policy $(D)/policy_dream --tasks $(D)/test_tasks.parquet --out $(D)/eval_dream
	$(DG) eval --policy $(D)/policy_real --tasks $(D)/test_tasks.parquet --out $(D)/eval_real
	$(PY) pipelines/report.py $(D)

clean-demo:
	rm -rf $(D)
