"""Curriculum: reward variance, seed-task selection, task variation and the λ mix."""
