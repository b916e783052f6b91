# The data stages the TextWorld pipelines share: disjoint train/test task files, episodes of the
# expert and of an ε-mixed policy (ε = 0.3) for training, expert episodes of the test games (for
# the experience model's fidelity), a replay store, offline reasoning.
#   $(call textworld_data,DIR,CHALLENGE,TRAIN_SEEDS,TEST_SEEDS,EPISODES_PER_TASK)
define textworld_data
	$(DG) tasks make --env textworld --challenge $(2) --seeds $(3) --split train --out $(1)/train_tasks.parquet
	$(DG) tasks make --env textworld --challenge $(2) --seeds $(4) --split test --out $(1)/test_tasks.parquet
	$(DG) collect --tasks $(1)/train_tasks.parquet --policy expert,mixed --epsilon 0.3 --episodes-per-task $(5) --out $(1)/train_episodes.jsonl
	$(DG) collect --tasks $(1)/test_tasks.parquet --policy expert --episodes-per-task 1 --out $(1)/test_episodes.jsonl
	$(DG) ingest $(1)/train_episodes.jsonl --store $(1)/store
	$(DG) store info $(1)/store
	$(DG) annotate --store $(1)/store
endef

# A pipeline in three phases: NAME-data (in order), NAME-runs (JOBS stages at a time, as their
# manifests' dependencies allow), NAME-report.
#   $(call staged_run,DIR,NAME,JOBS)
define staged_run
	@mkdir -p $(1)
	$(MAKE) --no-print-directory $(2)-data
	$(MAKE) --no-print-directory -j$(3) $(2)-runs
	$(MAKE) --no-print-directory $(2)-report
endef
