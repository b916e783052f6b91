"""Policy learning: agent prompt, advantages and losses (pure functions), rollout and training."""
