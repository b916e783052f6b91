"""One help text per option: a CLI option that sets a config field shows that field's doc."""

from __future__ import annotations

import dataclasses
import importlib

import typer

from dreamgym_cli.cli import app

# The config dataclass each command builds; a command missing here fails the test, so a new
# command is checked from its first commit.
CONFIG_OF = {
    "tasks make": "dreamgym_cli.stages.tasks.MakeConfig",
    "tasks evolve": "dreamgym_cli.stages.evolve.EvolveConfig",
    "collect": "dreamgym_cli.stages.collect.CollectConfig",
    "ingest": "dreamgym_cli.stages.ingest.IngestConfig",
    "annotate": "dreamgym_cli.stages.annotate.AnnotateConfig",
    "train-em": "dreamgym_cli.stages.train_em.TrainEMConfig",
    "eval-em": "dreamgym_cli.stages.eval_em.EvalEMConfig",
    "train-agent": "dreamgym_cli.stages.train_agent.TrainAgentConfig",
    "rollout": "dreamgym_cli.stages.rollout.RolloutConfig",
    "eval": "dreamgym_cli.stages.eval.EvalConfig",
    "serve": "dreamgym_cli.stages.serve.ServeConfig",
    "export-policy": "dreamgym_cli.stages.export_policy.ExportPolicyConfig",
}
NO_CONFIG = {"store info", "store sql"}


def _commands(group, prefix: str = ""):
    """(path, command) for every leaf command of the app, recursively over groups."""
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            yield from _commands(command, path + " ")
        else:
            yield path, command


def _config_class(path: str) -> type:
    module, cls = CONFIG_OF[path].rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


def _field_of(param, fields: set[str]) -> str | None:
    """The config field an option sets: its flag (`--out` -> out, `--lambda` -> lambda_) or the
    Python name of the parameter."""
    names = [param.name or ""]
    for flag in param.opts:
        if flag.startswith("--"):
            names.append(flag[2:].replace("-", "_"))
    names += [n + "_" for n in names]
    return next((n for n in names if n in fields), None)


def _mapped_params():
    for path, command in _commands(typer.main.get_command(app)):
        if path in NO_CONFIG:
            continue
        cls = _config_class(path)
        docs = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
        for param in command.params:
            field = _field_of(param, set(docs))
            if field is not None:
                yield path, param, field, docs[field]


def test_every_command_has_a_known_config():
    paths = {path for path, _ in _commands(typer.main.get_command(app))}
    assert paths == set(CONFIG_OF) | NO_CONFIG


def test_option_help_is_the_config_field_doc():
    drift = [f"{path} {param.opts[0] if param.opts else param.name}: CLI {param.help!r} != "
             f"{field} {doc!r}" for path, param, field, doc in _mapped_params()
             if getattr(param, "help", None) != doc]
    assert not drift, "\n".join(drift)


def test_mapped_fields_have_help():
    missing = [f"{path} {field}" for path, _, field, doc in _mapped_params() if not doc.strip()]
    assert not missing, missing


def test_the_walk_sees_the_options():
    """Guards the test above against matching nothing."""
    seen = {(path, field) for path, _, field, _ in _mapped_params()}
    assert ("train-em", "retrieval_k") in seen and ("train-agent", "lambda_") in seen
    assert ("ingest", "format") in seen and ("collect", "out") in seen
    assert len(seen) > 150


def test_help_texts_do_not_load_torch():
    """The help texts import the stages' config modules: those must stay light."""
    import subprocess
    import sys

    code = "import sys, dreamgym_cli.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
