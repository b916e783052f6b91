# `make table1` / `make table2`: the paper's Tables 1 and 2 in miniature, on real TextWorld games,
# CPU only, in the regime where RL has room above SFT (../shared/notes/probe-grpo-real.md):
#
#   data      four disjoint sets of tw-simple games: T1_DEMO_SEEDS (the offline data: one expert
#             demo each for SFT, plus ε-mixed episodes for the experience model), T1_POOL_SEEDS
#             (the RL task pool: instructions and initial states only, its real transitions cost
#             budget), T1_VAL_SEEDS (learning curves), T1_TEST_SEEDS (the held-out result)
#   sft       per training seed: behaviour cloning on the demos (expert episodes only)
#   em        the SFT policy's own sampled real rollouts on the demo games join the offline data
#             (the experience model must have seen the policy's kind of actions, off-list ones
#             included); experience models: full, w/o retrieval, w/o reasoning; fidelity on held-
#             out expert episodes and on the SFT policy's held-out real transitions
#   rows      table 1: SFT; GRPO real (budget B real transitions); GRPO DreamGym (0 real in RL);
#             DreamGym-S2R (the DreamGym policy + GRPO real with B/8)
#             table 2 (after table 1, on its data, SFT policies and full experience model; its
#             rows run T2_ITERS iterations, a third of table 1's, to keep it within its 100 min
#             on 2 cores: a dream row cost ~34 min at 24 iterations, ~17 since the dream env's
#             transition cache): PPO real (B2); PPO
#             DreamGym; GRPO DreamGym full (the ablations' reference at the same updates);
#             DreamGym w/o retrieval, w/o reasoning, w/o task generation (GRPO, as the paper's)
#   eval      every row greedy on the T1_TEST_SEEDS games; pipelines/table1_report.py writes
#             $(T1_DIR)/REPORT_table{1,2}.md, docs/results.md and docs/results/table{1,2}.json
#
# Order (`make table1` on 2 cores): the experience model waits for the first seed's SFT policy and
# every dream row waits for the experience model, so table1-runs runs in three phases instead of
# leaving the order to make: (1) the first T1_JOBS seeds' SFT; (2) the experience-model chain
# (the SFT policy's rollouts, train-em, fidelity) on one lane while the other lane(s) run the
# remaining SFT seeds, their evals and the first real row; (3) the dream rows first, then
# everything else, T1_JOBS at a time. Games are generated two task files at a time.
#
# Every RL row runs T1_ITERS iterations of T1_BATCH_TASKS × T1_GROUP episodes and 4 optimizer
# steps each (equal policy updates), rewards success minus T1_PENALTY per off-list action,
# logs greedy success on the validation games every T1_EVAL_EVERY iterations, and trains in its
# own copy of the replay store. Rows run T1_JOBS at a time with one torch thread each.
# Re-running skips finished stages (manifests).
T1_DIR          ?= runs/table1
T1_CHALLENGE    ?= tw-simple
T1_DEMO_SEEDS   ?= 1-32
T1_POOL_SEEDS   ?= 1-128
T1_VAL_SEEDS    ?= 501-520
T1_TEST_SEEDS   ?= 1001-1100
T1_SEEDS        ?= 0 1 2
T1_MIXED_EPISODES ?= 2
T1_EM_SFT_EPISODES ?= 4
T1_EM_BASE      ?= tiny:1m
T1_EM_STEPS     ?= 600
T1_SFT_STEPS    ?= 1200
T1_ITERS        ?= 24
T1_GROUP        ?= 4
T1_BATCH_TASKS  ?= 4
T1_TURNS        ?= 15
T1_EVAL_TURNS   ?= 20
T1_EVAL_EVERY   ?= 6
T1_LR           ?= 1e-4
T1_KL           ?= 0.02
T1_PENALTY      ?= 0.05
T1_JOBS         ?= 2
T2_ITERS        ?= 8
T2_EVAL_EVERY   ?= $(T2_ITERS)
T1_B            := $(shell echo $$(( $(T1_ITERS) * $(T1_GROUP) * $(T1_BATCH_TASKS) * $(T1_TURNS) )))
T1_B8           := $(shell echo $$(( $(T1_B) / 8 )))
T2_B            := $(shell echo $$(( $(T2_ITERS) * $(T1_GROUP) * $(T1_BATCH_TASKS) * $(T1_TURNS) )))
T := $(T1_DIR)
T1_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
T1_RL_COMMON := --tasks $(T)/pool_tasks.parquet --group-size $(T1_GROUP) \
         --batch-tasks $(T1_BATCH_TASKS) --max-steps-per-episode $(T1_TURNS) --lr $(T1_LR) \
         --kl-coef $(T1_KL) --outcome success --invalid-penalty $(T1_PENALTY) \
         --eval-tasks $(T)/val_tasks.parquet --eval-turns $(T1_EVAL_TURNS)
T1_RL := $(T1_RL_COMMON) --iterations $(T1_ITERS) --eval-every $(T1_EVAL_EVERY)
T2_RL := $(T1_RL_COMMON) --iterations $(T2_ITERS) --eval-every $(T2_EVAL_EVERY)
T1_EM_OPTS := --base $(T1_EM_BASE) --max-steps $(T1_EM_STEPS) --batch-size 8 --max-length 1024 \
              --history 0 --task-examples 8
T1_ROWS := sft grpo_real grpo_dream s2r
T2_ROWS := ppo_real ppo_dream dream_full dream_no_retrieval dream_no_reasoning dream_no_taskgen
T1_FIRST_SEED := $(firstword $(T1_SEEDS))
T1_COUNT = $$($(DG) store sql $(1) "SELECT count(*) AS n FROM steps" --json | $(PY) -c \
           'import json,sys; print(json.load(sys.stdin)["rows"][0]["n"])')

.PHONY: table1 table1-data table1-runs table1-report table2 table2-data table2-runs \
        table2-report clean-table1

table1: venv
	@mkdir -p $(T)
	$(MAKE) --no-print-directory table1-data
	$(MAKE) --no-print-directory table1-runs
	$(MAKE) --no-print-directory table1-report
table2: venv
	$(call staged_run,$(T),table2,$(T1_JOBS))

table1-data: $(T)/table1.json
table2-data: $(T)/table1.json

$(T)/table1.json:
	@mkdir -p $(T)
	$(DG) tasks make --env textworld --challenge $(T1_CHALLENGE) --seeds $(T1_POOL_SEEDS) --split train --out $(T)/pool_tasks.parquet & pool=$$!; \
	  $(DG) tasks make --env textworld --challenge $(T1_CHALLENGE) --seeds $(T1_TEST_SEEDS) --split test --out $(T)/test_tasks.parquet; test=$$?; \
	  wait $$pool && test $$test -eq 0
	$(DG) tasks make --env textworld --challenge $(T1_CHALLENGE) --seeds $(T1_DEMO_SEEDS) --split train --out $(T)/demo_tasks.parquet & demo=$$!; \
	  $(DG) tasks make --env textworld --challenge $(T1_CHALLENGE) --seeds $(T1_VAL_SEEDS) --split valid --out $(T)/val_tasks.parquet; val=$$?; \
	  wait $$demo && test $$val -eq 0
	$(DG) collect --tasks $(T)/demo_tasks.parquet --policy expert --episodes-per-task 1 --out $(T)/demo_episodes.jsonl
	$(DG) collect --tasks $(T)/demo_tasks.parquet --policy mixed --epsilon 0.3 --episodes-per-task $(T1_MIXED_EPISODES) --out $(T)/mixed_episodes.jsonl
	$(DG) collect --tasks $(T)/test_tasks.parquet --policy expert --episodes-per-task 1 --out $(T)/test_episodes.jsonl
	$(DG) ingest $(T)/demo_episodes.jsonl $(T)/mixed_episodes.jsonl --store $(T)/store
	$(DG) annotate --store $(T)/store
	$(DG) store info $(T)/store
	@printf '{"challenge": "%s", "demo_seeds": "%s", "pool_seeds": "%s", "val_seeds": "%s", "test_seeds": "%s", "training_seeds": "%s", "offline_real_transitions": %s, "em_base": "%s", "em_steps": %s, "sft_steps": %s, "iterations": %s, "group_size": %s, "batch_tasks": %s, "turns_per_episode": %s, "eval_turns": %s, "lr": %s, "kl_coef": %s, "invalid_penalty": %s, "B": %s, "B_s2r": %s, "jobs": %s}\n' \
	  "$(T1_CHALLENGE)" "$(T1_DEMO_SEEDS)" "$(T1_POOL_SEEDS)" "$(T1_VAL_SEEDS)" "$(T1_TEST_SEEDS)" "$(T1_SEEDS)" $(call T1_COUNT,$(T)/store) "$(T1_EM_BASE)" $(T1_EM_STEPS) $(T1_SFT_STEPS) $(T1_ITERS) $(T1_GROUP) $(T1_BATCH_TASKS) $(T1_TURNS) $(T1_EVAL_TURNS) $(T1_LR) $(T1_KL) $(T1_PENALTY) $(T1_B) $(T1_B8) $(T1_JOBS) > $(T)/table1.json.tmp
	mv $(T)/table1.json.tmp $@

# ---- the experience models' data: the offline store + the SFT policy's own real rollouts ---

$(T)/store_em/.done: $(T)/seed$(T1_FIRST_SEED)/sft/manifest.json
	rm -rf $(T)/store_em && cp -r $(T)/store $(T)/store_em
	$(T1_ENV) $(DG) rollout --policy $(T)/seed$(T1_FIRST_SEED)/sft --env textworld --tasks $(T)/demo_tasks.parquet --store $(T)/store_em --episodes-per-task $(T1_EM_SFT_EPISODES) --max-steps-per-episode $(T1_TURNS) --temperature 1 --workers 0
	$(DG) annotate --store $(T)/store_em
	$(PY) -c 'import json,sys; p=sys.argv[1]; d=json.load(open(p)); d["em_policy_transitions"]=int(sys.argv[2])-d["offline_real_transitions"]; json.dump(d,open(p,"w"))' $(T)/table1.json $(call T1_COUNT,$(T)/store_em)
	touch $@

$(T)/em/full/manifest.json: $(T)/store_em/.done
	$(T1_ENV) $(DG) train-em --store $(T)/store_em $(T1_EM_OPTS) --retrieval-k 2 --out $(T)/em/full
$(T)/em/no_retrieval/manifest.json: $(T)/store_em/.done
	$(T1_ENV) $(DG) train-em --store $(T)/store_em $(T1_EM_OPTS) --retrieval-k 0 --out $(T)/em/no_retrieval
$(T)/em/no_reasoning/manifest.json: $(T)/store_em/.done
	$(T1_ENV) $(DG) train-em --store $(T)/store_em $(T1_EM_OPTS) --retrieval-k 2 --no-reasoning --out $(T)/em/no_reasoning
# fidelity on held-out games: expert episodes, and the SFT policy's own greedy episodes there
$(T)/fidelity/%/manifest.json: $(T)/em/%/manifest.json
	$(T1_ENV) $(DG) eval-em --em $(T)/em/$* --episodes $(T)/test_episodes.jsonl --max-episodes 6 --max-retries 0 --out $(T)/fidelity/$*
$(T)/fidelity_sft/%/manifest.json: $(T)/em/%/manifest.json $(T)/seed$(T1_FIRST_SEED)/eval_sft/manifest.json
	$(T1_ENV) $(DG) eval-em --em $(T)/em/$* --episodes $(T)/seed$(T1_FIRST_SEED)/eval_sft/episodes.jsonl --max-episodes 12 --max-retries 0 --out $(T)/fidelity_sft/$*

# ---- the rows of the training seeds --------------------------------------------------------
# A dream row copies the experience model's store first: its run enriches only its own copy.

# $(1) seed, $(2) row, $(3) algo, $(4) experience model, $(5) RL options (T1_RL or T2_RL)
define T1_DREAM_ROW
$(T)/seed$(1)/$(2)/manifest.json: $(T)/seed$(1)/sft/manifest.json $(T)/em/$(4)/manifest.json
	@mkdir -p $(T)/seed$(1) && test -d $(T)/seed$(1)/store_$(2) || cp -r $(T)/store_em $(T)/seed$(1)/store_$(2)
	$(T1_ENV) $(DG) train-agent --algo $(3) --init $(T)/seed$(1)/sft --env dream:$(T)/em/$(4) --store $(T)/seed$(1)/store_$(2) $(5) --workers 0 --seed $(1) --out $(T)/seed$(1)/$(2)
endef
# $(1) seed, $(2) row, $(3) algo, $(4) start policy (a row of this seed), $(5) real-step budget,
# $(6) RL options (T1_RL or T2_RL)
define T1_REAL_ROW
$(T)/seed$(1)/$(2)/manifest.json: $(T)/seed$(1)/$(4)/manifest.json
	$(T1_ENV) $(DG) train-agent --algo $(3) --init $(T)/seed$(1)/$(4) --env textworld $(6) --max-real-steps $(5) --workers 0 --seed $(1) --out $(T)/seed$(1)/$(2)
endef
define T1_SEED_RULES
# order-only: the store_em rule adds a count to table1.json, which must not make SFT stale
$(T)/seed$(1)/sft/manifest.json: | $(T)/table1.json
	$(T1_ENV) $(DG) train-agent --algo sft --store $(T)/store --sft-data expert --base tiny:1m --max-steps $(T1_SFT_STEPS) --history-budget-tokens 0 --seed $(1) --out $(T)/seed$(1)/sft
$(T)/seed$(1)/eval_%/manifest.json: $(T)/seed$(1)/%/manifest.json
	$(T1_ENV) $(DG) eval --policy $(T)/seed$(1)/$$* --tasks $(T)/test_tasks.parquet --max-steps-per-episode $(T1_EVAL_TURNS) --workers 0 --out $(T)/seed$(1)/eval_$$*
endef
$(foreach s,$(T1_SEEDS),$(eval $(call T1_SEED_RULES,$(s))) \
  $(eval $(call T1_REAL_ROW,$(s),grpo_real,grpo,sft,$(T1_B),$(T1_RL))) \
  $(eval $(call T1_REAL_ROW,$(s),s2r,grpo,grpo_dream,$(T1_B8),$(T1_RL))) \
  $(eval $(call T1_DREAM_ROW,$(s),grpo_dream,grpo,full,$(T1_RL))) \
  $(eval $(call T1_REAL_ROW,$(s),ppo_real,ppo,sft,$(T2_B),$(T2_RL))) \
  $(eval $(call T1_DREAM_ROW,$(s),ppo_dream,ppo,full,$(T2_RL))) \
  $(eval $(call T1_DREAM_ROW,$(s),dream_full,grpo,full,$(T2_RL))) \
  $(eval $(call T1_DREAM_ROW,$(s),dream_no_retrieval,grpo,no_retrieval,$(T2_RL))) \
  $(eval $(call T1_DREAM_ROW,$(s),dream_no_reasoning,grpo,no_reasoning,$(T2_RL))) \
  $(eval $(call T1_DREAM_ROW,$(s),dream_no_taskgen,grpo,full,$(T2_RL) --no-curriculum)))

T1_TARGETS := $(T)/fidelity/full/manifest.json $(T)/fidelity_sft/full/manifest.json \
              $(foreach s,$(T1_SEEDS),$(foreach r,$(T1_ROWS),$(T)/seed$(s)/eval_$(r)/manifest.json))
T2_TARGETS := $(foreach v,no_retrieval no_reasoning,$(T)/fidelity/$(v)/manifest.json \
                $(T)/fidelity_sft/$(v)/manifest.json) \
              $(foreach s,$(T1_SEEDS),$(foreach r,$(T2_ROWS),$(T)/seed$(s)/eval_$(r)/manifest.json))
# the phases of table1-runs (see the top of this file)
T1_LATER_SEEDS := $(wordlist 2,$(words $(T1_SEEDS)),$(T1_SEEDS))
T1_P1 := $(foreach s,$(wordlist 1,$(T1_JOBS),$(T1_SEEDS)),$(T)/seed$(s)/sft/manifest.json)
T1_P2_EM := $(T)/em/full/manifest.json $(T)/fidelity/full/manifest.json \
            $(T)/fidelity_sft/full/manifest.json
T1_P2_OTHER := $(foreach s,$(T1_LATER_SEEDS),$(T)/seed$(s)/eval_sft/manifest.json) \
               $(T)/seed$(T1_FIRST_SEED)/eval_grpo_real/manifest.json
T1_P3 := $(foreach s,$(T1_SEEDS),$(T)/seed$(s)/grpo_dream/manifest.json) $(T1_TARGETS)
T1_LANES := $(shell echo $$(( $(T1_JOBS) > 1 ? $(T1_JOBS) - 1 : 1 )))
T1_SUBMAKE := $(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST))
table1-runs:
	$(T1_SUBMAKE) -j$(T1_JOBS) $(T1_P1)
	if [ $(T1_JOBS) -gt 1 ]; then \
	  $(T1_SUBMAKE) $(T1_P2_EM) & em=$$!; $(T1_SUBMAKE) -j$(T1_LANES) $(T1_P2_OTHER); other=$$?; \
	  wait $$em && test $$other -eq 0; \
	else $(T1_SUBMAKE) $(T1_P2_EM) $(T1_P2_OTHER); fi
	$(T1_SUBMAKE) -j$(T1_JOBS) $(T1_P3)
table2-runs: $(T2_TARGETS)

T1_CMD_VARS = T1_SEEDS='$(T1_SEEDS)' T1_DEMO_SEEDS=$(T1_DEMO_SEEDS) T1_POOL_SEEDS=$(T1_POOL_SEEDS) \
              T1_TEST_SEEDS=$(T1_TEST_SEEDS) T1_ITERS=$(T1_ITERS) T2_ITERS=$(T2_ITERS)
table1-report:
	$(PY) pipelines/table1_report.py $(T) --table 1 --docs docs/results.md \
	  --command "make table1 $(T1_CMD_VARS)"
table2-report:
	$(PY) pipelines/table1_report.py $(T) --table 2 --docs docs/results.md \
	  --command "make table2 $(T1_CMD_VARS)"

clean-table1:
	rm -rf $(T)
