# The demo pipeline on real TextWorld games, tiny models, CPU. Each stage is an artifact with a
# manifest under $(DEMO_DIR); re-running skips the stages whose inputs and config are unchanged.
DEMO_DIR   ?= runs/demo
DEMO_SCALE ?= small
ifeq ($(DEMO_SCALE),full)
  DEMO_TRAIN_SEEDS ?= 1-40
  DEMO_TEST_SEEDS  ?= 1001-1020
else
  DEMO_TRAIN_SEEDS ?= 1-8
  DEMO_TEST_SEEDS  ?= 1001-1004
endif
DEMO_CHALLENGE ?= tw-simple

demo: venv
	@mkdir -p $(DEMO_DIR)
	$(DG) tasks make --env textworld --challenge $(DEMO_CHALLENGE) --seeds $(DEMO_TRAIN_SEEDS) --split train --out $(DEMO_DIR)/train_tasks.parquet
	$(DG) tasks make --env textworld --challenge $(DEMO_CHALLENGE) --seeds $(DEMO_TEST_SEEDS) --split test --out $(DEMO_DIR)/test_tasks.parquet
	$(DG) collect --tasks $(DEMO_DIR)/train_tasks.parquet --policy mixed --epsilon 0.3 --episodes-per-task 3 --out $(DEMO_DIR)/train_episodes.jsonl
	$(DG) collect --tasks $(DEMO_DIR)/test_tasks.parquet --policy expert --episodes-per-task 1 --out $(DEMO_DIR)/test_episodes.jsonl
	$(DG) ingest $(DEMO_DIR)/train_episodes.jsonl --store $(DEMO_DIR)/store
	$(DG) store info $(DEMO_DIR)/store

clean-demo:
	rm -rf $(DEMO_DIR)
