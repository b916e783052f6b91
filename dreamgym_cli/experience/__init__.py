"""Experience model: prompt and completion format, parser, offline annotation, fidelity."""
