# `make table1`: the paper's Tables 1 and 2 in miniature, on real TextWorld games, CPU only.
#
#   data      tasks (train/test seeds disjoint) → collect (expert + ε-mixed) → ingest → annotate
#   models    three experience models: full, w/o replay retrieval, w/o reasoning; eval-em each
#   rows      per training seed: SFT; GRPO real (B real transitions); GRPO DreamGym (0 real);
#             DreamGym-S2R (the DreamGym policy + GRPO real with B/16); PPO real (B) and
#             DreamGym (0); DreamGym w/o retrieval, w/o reasoning, w/o task generation
#   eval      every row on the held-out real games; pipelines/table1_report.py writes
#             $(T1_DIR)/REPORT.md and docs/results.md
#
# Rows run T1_JOBS at a time (one torch thread each). Every RL row in a dream env gets its own
# copy of the replay store, so one row's synthetic episodes never reach another row's retrieval.
# B is the most real transitions GRPO real can use in T1_ITERS iterations; DreamGym rows run the
# same iterations (the same number of policy updates). Re-running skips finished stages.
T1_DIR          ?= runs/table1
T1_CHALLENGE    ?= tw-simple
T1_TRAIN_SEEDS  ?= 1-16
T1_TEST_SEEDS   ?= 1001-1020
T1_EPISODES     ?= 3
T1_SEEDS        ?= 0 1 2
T1_EM_BASE      ?= tiny:1m
T1_EM_STEPS     ?= 450
T1_SFT_STEPS    ?= 600
T1_ITERS        ?= 3
T1_GROUP        ?= 4
T1_BATCH_TASKS  ?= 4
T1_TURNS        ?= 10
T1_EVAL_TURNS   ?= 20
T1_JOBS         ?= 2
T1_B            := $(shell echo $$(( $(T1_ITERS) * $(T1_GROUP) * $(T1_BATCH_TASKS) * $(T1_TURNS) )))
T1_B16          := $(shell echo $$(( $(T1_B) / 16 )))
T := $(T1_DIR)
T1_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
T1_RL := --tasks $(T)/train_tasks.parquet --iterations $(T1_ITERS) --group-size $(T1_GROUP) \
         --batch-tasks $(T1_BATCH_TASKS) --max-steps-per-episode $(T1_TURNS)
T1_EM_OPTS := --base $(T1_EM_BASE) --max-steps $(T1_EM_STEPS) --batch-size 8 --max-length 1024 \
              --history 0 --task-examples 8
T1_ROWS := sft grpo_real grpo_dream s2r ppo_real ppo_dream dream_no_retrieval \
           dream_no_reasoning dream_no_taskgen

.PHONY: table1 table1-data table1-runs table1-report clean-table1

table1: venv
	$(call staged_run,$(T),table1,$(T1_JOBS))

table1-data:
	$(call textworld_data,$(T),$(T1_CHALLENGE),$(T1_TRAIN_SEEDS),$(T1_TEST_SEEDS),$(T1_EPISODES))
	@printf '{"challenge": "%s", "train_seeds": "%s", "test_seeds": "%s", "episodes_per_task": %s, "training_seeds": "%s", "em_base": "%s", "em_steps": %s, "sft_steps": %s, "iterations": %s, "group_size": %s, "batch_tasks": %s, "turns_per_episode": %s, "eval_turns": %s, "B": %s, "B_s2r": %s, "jobs": %s}\n' \
	  "$(T1_CHALLENGE)" "$(T1_TRAIN_SEEDS)" "$(T1_TEST_SEEDS)" $(T1_EPISODES) "$(T1_SEEDS)" "$(T1_EM_BASE)" $(T1_EM_STEPS) $(T1_SFT_STEPS) $(T1_ITERS) $(T1_GROUP) $(T1_BATCH_TASKS) $(T1_TURNS) $(T1_EVAL_TURNS) $(T1_B) $(T1_B16) $(T1_JOBS) > $(T)/table1.json

# ---- experience models (shared by the seeds) ------------------------------------------------

$(T)/em/full/manifest.json:
	$(T1_ENV) $(DG) train-em --store $(T)/store $(T1_EM_OPTS) --retrieval-k 2 --out $(T)/em/full
$(T)/em/no_retrieval/manifest.json:
	$(T1_ENV) $(DG) train-em --store $(T)/store $(T1_EM_OPTS) --retrieval-k 0 --out $(T)/em/no_retrieval
$(T)/em/no_reasoning/manifest.json:
	$(T1_ENV) $(DG) train-em --store $(T)/store $(T1_EM_OPTS) --retrieval-k 2 --no-reasoning --out $(T)/em/no_reasoning
$(T)/fidelity/%/manifest.json: $(T)/em/%/manifest.json
	$(T1_ENV) $(DG) eval-em --em $(T)/em/$* --episodes $(T)/test_episodes.jsonl --max-episodes 3 --max-retries 0 --out $(T)/fidelity/$*

# ---- the rows of the training seeds --------------------------------------------------------
# A dream row copies the pristine store first: its run enriches only its own copy.

# $(1) seed, $(2) row, $(3) algo, $(4) experience model, $(5) extra options
define T1_DREAM_ROW
$(T)/seed$(1)/$(2)/manifest.json: $(T)/seed$(1)/sft/manifest.json $(T)/em/$(4)/manifest.json
	@mkdir -p $(T)/seed$(1) && test -d $(T)/seed$(1)/store_$(2) || cp -r $(T)/store $(T)/seed$(1)/store_$(2)
	$(T1_ENV) $(DG) train-agent --algo $(3) --init $(T)/seed$(1)/sft --env dream:$(T)/em/$(4) --store $(T)/seed$(1)/store_$(2) $(T1_RL) $(5) --seed $(1) --out $(T)/seed$(1)/$(2)
endef
# $(1) seed, $(2) row, $(3) algo, $(4) start policy (a row of this seed), $(5) real-step budget
define T1_REAL_ROW
$(T)/seed$(1)/$(2)/manifest.json: $(T)/seed$(1)/$(4)/manifest.json
	$(T1_ENV) $(DG) train-agent --algo $(3) --init $(T)/seed$(1)/$(4) --env textworld $(T1_RL) --max-real-steps $(5) --workers 0 --seed $(1) --out $(T)/seed$(1)/$(2)
endef
define T1_SEED_RULES
$(T)/seed$(1)/sft/manifest.json:
	$(T1_ENV) $(DG) train-agent --algo sft --store $(T)/store --base tiny:1m --max-steps $(T1_SFT_STEPS) --history-budget-tokens 0 --seed $(1) --out $(T)/seed$(1)/sft
$(T)/seed$(1)/eval_%/manifest.json: $(T)/seed$(1)/%/manifest.json
	$(T1_ENV) $(DG) eval --policy $(T)/seed$(1)/$$* --tasks $(T)/test_tasks.parquet --max-steps-per-episode $(T1_EVAL_TURNS) --workers 0 --out $(T)/seed$(1)/eval_$$*
endef
$(foreach s,$(T1_SEEDS),$(eval $(call T1_SEED_RULES,$(s))) \
  $(eval $(call T1_REAL_ROW,$(s),grpo_real,grpo,sft,$(T1_B))) \
  $(eval $(call T1_REAL_ROW,$(s),ppo_real,ppo,sft,$(T1_B))) \
  $(eval $(call T1_REAL_ROW,$(s),s2r,grpo,grpo_dream,$(T1_B16))) \
  $(eval $(call T1_DREAM_ROW,$(s),grpo_dream,grpo,full,)) \
  $(eval $(call T1_DREAM_ROW,$(s),ppo_dream,ppo,full,)) \
  $(eval $(call T1_DREAM_ROW,$(s),dream_no_retrieval,grpo,no_retrieval,)) \
  $(eval $(call T1_DREAM_ROW,$(s),dream_no_reasoning,grpo,no_reasoning,)) \
  $(eval $(call T1_DREAM_ROW,$(s),dream_no_taskgen,grpo,full,--no-curriculum)))

T1_TARGETS := $(foreach v,full no_retrieval no_reasoning,$(T)/fidelity/$(v)/manifest.json) \
              $(foreach s,$(T1_SEEDS),$(foreach r,$(T1_ROWS),$(T)/seed$(s)/eval_$(r)/manifest.json))
table1-runs: $(T1_TARGETS)

table1-report:
	$(PY) pipelines/table1_report.py $(T) --docs docs/results.md \
	  --command "make table1 T1_CHALLENGE=$(T1_CHALLENGE) T1_SEEDS='$(T1_SEEDS)' T1_ITERS=$(T1_ITERS)"

clean-table1:
	rm -rf $(T)
