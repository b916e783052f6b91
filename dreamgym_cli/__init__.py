"""dreamgym: train LLM agents with reinforcement learning on synthetic experience."""

__version__ = "0.1.0"
