"""Models and generation: `tiny:<size>` models and their tokenizer (tiny.py, tokenizer.py),
loading/adapting/saving HF models and PEFT adapters (models.py), and one generation interface
with the transformers, openai and vllm backends (generate.py, backend_*.py).

Nothing is imported here: importing `dreamgym_cli.llm` must stay cheap, and each backend's
dependencies load only when that backend is chosen.
"""
