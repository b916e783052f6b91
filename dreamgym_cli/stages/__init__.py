"""One module per CLI command: `run(config)` does the work, `render(result)` shows it."""
