"""Environments: the Env protocol (`base`), the registry by name (`registry`) and the adapters."""
