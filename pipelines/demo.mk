# The demo: the whole DreamGym chain on real TextWorld games with tiny models on CPU.
#   tasks → collect → ingest → annotate → train-em → eval-em → SFT → GRPO in the dream env (with
#   the curriculum) → GRPO in the real env (for comparison) → eval on held-out real games
#   → REPORT.md
# Every stage writes an artifact with a manifest under $(DEMO_DIR); re-running skips the stages
# whose inputs and config are unchanged. After the data stages, independent stages run
# DEMO_JOBS at a time with one torch thread each (the experience model trains while SFT does;
# the two GRPO runs train side by side). DEMO_SCALE=full runs a larger version.
DEMO_DIR   ?= runs/demo
DEMO_SCALE ?= small
DEMO_CHALLENGE ?= tw-simple
DEMO_JOBS  ?= 2
ifeq ($(DEMO_SCALE),full)
  DEMO_TRAIN_SEEDS ?= 1-40
  DEMO_TEST_SEEDS  ?= 1001-1020
  DEMO_EPISODES    ?= 4
  DEMO_EM_BASE     ?= tiny:10m
  DEMO_EM_STEPS    ?= 1500
  DEMO_SFT_STEPS   ?= 1200
  DEMO_ITERS       ?= 10
else
  DEMO_TRAIN_SEEDS ?= 1-12
  DEMO_TEST_SEEDS  ?= 1001-1010
  DEMO_EPISODES    ?= 3
  DEMO_EM_BASE     ?= tiny:1m
  DEMO_EM_STEPS    ?= 300
  DEMO_SFT_STEPS   ?= 600
  DEMO_ITERS       ?= 3
endif
D := $(DEMO_DIR)
DEMO_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# 15 turns: tw-simple walkthroughs take 8, 9 or 12 steps, so a shorter training horizon would
# make half the games unwinnable while eval allows 20
RL_OPTS := --tasks $(D)/train_tasks.parquet --iterations $(DEMO_ITERS) --group-size 4 \
           --batch-tasks 4 --max-steps-per-episode 15 --seed 0
EVAL_OPTS := --tasks $(D)/test_tasks.parquet --max-steps-per-episode 20 --workers 0

.PHONY: demo demo-data demo-runs demo-report

demo: venv
	$(call staged_run,$(D),demo,$(DEMO_JOBS))

demo-data:
	$(call textworld_data,$(D),$(DEMO_CHALLENGE),$(DEMO_TRAIN_SEEDS),$(DEMO_TEST_SEEDS),$(DEMO_EPISODES))

$(D)/em/manifest.json:
	$(DEMO_ENV) $(DG) train-em --store $(D)/store --base $(DEMO_EM_BASE) --max-steps $(DEMO_EM_STEPS) --batch-size 8 --max-length 1024 --retrieval-k 2 --history 0 --task-examples 8 --out $(D)/em
$(D)/fidelity/manifest.json: $(D)/em/manifest.json
	$(DEMO_ENV) $(DG) eval-em --em $(D)/em --episodes $(D)/test_episodes.jsonl --max-episodes 2 --max-retries 0 --out $(D)/fidelity
$(D)/policy_sft/manifest.json:
	$(DEMO_ENV) $(DG) train-agent --algo sft --store $(D)/store --base tiny:1m --max-steps $(DEMO_SFT_STEPS) --history-budget-tokens 0 --out $(D)/policy_sft
# The dream run enriches a copy of the store, so the store SFT and the experience model learnt
# from stays as collected (and their stages stay up to date on a re-run).
$(D)/policy_dream/manifest.json: $(D)/policy_sft/manifest.json $(D)/em/manifest.json
	test -d $(D)/store_dream || cp -r $(D)/store $(D)/store_dream
	$(DEMO_ENV) $(DG) train-agent --algo grpo --init $(D)/policy_sft --env dream:$(D)/em --store $(D)/store_dream $(RL_OPTS) --out $(D)/policy_dream
$(D)/policy_real/manifest.json: $(D)/policy_sft/manifest.json
	$(DEMO_ENV) $(DG) train-agent --algo grpo --init $(D)/policy_sft --env textworld $(RL_OPTS) --workers 0 --out $(D)/policy_real
$(D)/eval_%/manifest.json: $(D)/policy_%/manifest.json
	$(DEMO_ENV) $(DG) eval --policy $(D)/policy_$* $(EVAL_OPTS) --out $(D)/eval_$*

demo-runs: $(D)/fidelity/manifest.json $(D)/eval_sft/manifest.json \
           $(D)/eval_dream/manifest.json $(D)/eval_real/manifest.json

demo-report:
	$(PY) pipelines/report.py $(D)

clean-demo:
	rm -rf $(D)
