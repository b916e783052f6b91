"""`dreamgym serve`: the dream env (or a real env) behind AgentGym's HTTP protocol.

    dreamgym serve --em EM --env-name textworld --port 36001
    dreamgym serve --env textworld --tasks T.parquet --port 36002
    dreamgym serve --env textworld --tasks T.parquet --agentgym-env textcraft --port 36003

With `--agentgym-env NAME` every endpoint answers in the exact shape of AgentGym's NAME server,
so agentenv's `<Name>EnvClient` classes and AgentGym-RL's rollout loop run against it unchanged
(only the address differs); the rewards then default to `sparse` (the last step's reward is the
episode's success, which is what AgentGym-RL scores). The task list (`--tasks`; for the dream env
by default the tasks of the model's replay store whose env is `--env-name`, ordered by task id) is
what `/reset`'s index selects; `--item-ids FILE` writes AgentGym-RL's `item_id` list for it.
Binds 127.0.0.1 unless `--host` says otherwise: the protocol has no authentication. Everything is
checked before the model loads or the port opens; the server runs until interrupted.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from dreamgym_cli.config import option
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import Task

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    em: Path | None = option(None, help="Experience-model directory: serve the dream env.")
    env: str | None = option(None, help="Real env to serve instead (textworld, ...).")
    env_name: str | None = option(None, help="Env name the server reports and, for --em, whose "
                                  "tasks it serves (default: the tasks' env).")
    tasks: Path | None = option(None, help="Task file; data_idx N plays its N-th task (--em "
                                "default: the tasks in the model's replay store).")
    host: str = option("127.0.0.1", help="Address to bind (no authentication: keep it local).")
    port: int = option(36001, help="TCP port.")
    dialect: str = option("id", help="Our canonical dialect: id, or env_idx (webshop-like); "
                          "ignored with --agentgym-env.")
    agentgym_env: str | None = option(None, help="Answer exactly as AgentGym's server for this "
                                      "env does: textcraft, babyai, sciworld, alfworld, webshop.")
    reward: str | None = option(None, help="dense (the env's rewards) or sparse (1 on the "
                                "winning last step, else 0; AgentGym-RL scores the last step). "
                                "Default: sparse with --agentgym-env, else dense.")
    max_sessions: int = option(512, help="Open sessions at most; to make room only a session "
                               "whose episode ended is closed, else /create answers 503.")
    idle_timeout: float = option(600.0, help="Seconds without a request before a session is "
                                 "closed.")
    step_timeout: float = option(600.0, help="Seconds one request may take (waiting for the "
                                 "dream model included) before it answers 504 and ends its "
                                 "episode.")
    max_body_bytes: int = option(1 << 20, help="Request bodies larger than this answer 413.")
    body_timeout: float = option(10.0, help="Seconds a client has to send a request body "
                                 "(else 408).")
    max_action_chars: int = option(4096, help="Actions longer than this answer 422.")
    item_ids: Path | None = option(None, help="Write AgentGym-RL's item-id file for the served "
                                   "tasks here (JSON: [{\"item_id\": \"NAME_0\"}, ...]).")
    max_steps: int | None = option(None, help="Step limit per episode (default: the task's).")
    store: Path | None = option(None, help="Replay store the dream env retrieves from (default: "
                                "the model's training store).")
    max_new_tokens: int | None = option(None, help="Dream env: tokens generated per step at most "
                                        "(default: the model's setting).")
    max_retries: int = option(2, help="Dream env: regenerations of an unparseable completion.")

    def __post_init__(self):
        if (self.em is None) == (self.env is None):
            raise InputError("give either --em EM (the dream env) or --env NAME (a real env)",
                             field="em")
        from dreamgym_cli.envs.registry import is_dream_name

        if self.env is not None and is_dream_name(self.env):
            object.__setattr__(self, "em", Path(self.env.split(":", 1)[1]))
            object.__setattr__(self, "env", None)
        for name in ("em", "tasks", "store", "item_ids"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        if self.dialect not in ("id", "env_idx"):
            raise InputError(f"expected id or env_idx, got {self.dialect!r}", field="dialect")
        from dreamgym_cli.serve.shapes import AGENTGYM

        if self.agentgym_env is not None:
            object.__setattr__(self, "agentgym_env", self.agentgym_env.lower())
            if self.agentgym_env not in AGENTGYM:
                raise InputError(f"expected one of {', '.join(AGENTGYM)}, got "
                                 f"{self.agentgym_env!r}", field="agentgym_env")
        if self.reward is None:
            object.__setattr__(self, "reward", "sparse" if self.agentgym_env else "dense")
        if self.reward not in ("dense", "sparse"):
            raise InputError(f"expected dense or sparse, got {self.reward!r}", field="reward")
        if self.item_ids is not None and self.agentgym_env is None:
            raise InputError("--item-ids names items after the AgentGym env: give "
                             "--agentgym-env too", field="item_ids")
        if not 0 < self.port < 65536:
            raise InputError(f"expected a port in 1-65535, got {self.port}", field="port")
        if self.max_retries < 0:
            raise InputError(f"expected >= 0, got {self.max_retries}", field="max_retries")
        for name in ("max_sessions", "max_steps", "max_new_tokens", "max_body_bytes",
                     "max_action_chars"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"expected >= 1, got {value}", field=name)
        for name in ("idle_timeout", "step_timeout", "body_timeout"):
            if getattr(self, name) <= 0:
                raise InputError(f"expected seconds > 0, got {getattr(self, name)}", field=name)


def _dream_parts(config: ServeConfig) -> tuple[Callable[[], Any], list[Task], str, str]:
    """(env factory, tasks, env name, description) for the dream env; one model, shared."""
    from dreamgym_cli.envs.dream import DreamEnv, open_experience_model, read_em_settings
    from dreamgym_cli.store import ReplayStore

    settings = read_em_settings(config.em, field="em")
    store_path = config.store or (Path(settings.store) if settings.store else None)
    if store_path is not None and not store_path.is_dir():
        raise InputError("replay store not found", file=store_path, field="store")
    store = ReplayStore.open(store_path) if store_path else None
    if config.tasks is not None:
        tasks = _read_tasks(config.tasks, config.env_name)
    elif store is not None:
        tasks = sorted((t for t in store.tasks()
                        if config.env_name is None or t.env == config.env_name),
                       key=lambda t: t.task_id)
        if not tasks:
            raise InputError(f"the model's store has no tasks for env {config.env_name!r}; "
                             "pass --tasks", file=store_path, field="env_name")
    else:
        raise InputError("the model records no replay store: pass --tasks", field="tasks")
    settings, model, tokenizer = open_experience_model(config.em, settings=settings)

    def factory() -> DreamEnv:
        return DreamEnv(config.em, store=store, model=model, tokenizer=tokenizer,
                        settings=settings, max_new_tokens=config.max_new_tokens,
                        max_steps=config.max_steps, max_retries=config.max_retries,
                        policy_name="serve")

    return factory, tasks, config.env_name or tasks[0].env, f", dream model {config.em}"


def _real_parts(config: ServeConfig) -> tuple[Callable[[], Any], list[Task], str, str]:
    from dreamgym_cli.envs.registry import check_env_name, make_env

    if config.tasks is None:
        raise InputError(f"serving a real env needs --tasks (a task file for {config.env})",
                         field="tasks")
    tasks = _read_tasks(config.tasks, None)
    kwargs = {} if config.max_steps is None else {"max_steps": config.max_steps}
    check_env_name(config.env)  # an unknown name fails now, with its did-you-mean
    wrong = [t for t in tasks if t.env != config.env]
    if wrong:
        raise InputError(f"task {wrong[0].task_id!r} is for env {wrong[0].env!r}, not "
                         f"{config.env!r}", file=config.tasks, field="env")
    return (lambda: make_env(config.env, **kwargs)), tasks, config.env_name or config.env, ""


def _read_tasks(path: Path, env_name: str | None) -> list[Task]:
    from dreamgym_cli.trajectories import read_tasks

    tasks = read_tasks(path)
    if env_name is not None:
        tasks = [t for t in tasks if t.env == env_name] or tasks
    return tasks


def prepare(config: ServeConfig):
    """(FastAPI app, session pool, summary) — everything short of opening the port."""
    from dreamgym_cli.serve.app import build_app
    from dreamgym_cli.serve.sessions import SessionPool
    from dreamgym_cli.serve.shapes import shape_for

    factory, tasks, env_name, description = (_dream_parts(config) if config.em is not None
                                             else _real_parts(config))
    # One env call at a time across sessions: the dream env's model generates for one request at
    # a time, and the real engines run in this process are not thread-safe (TextWorld's Z-machine
    # interpreter: parallel resets of a game answered "has no episode" under load in CI). The
    # HTTP side stays concurrent; sessions never block each other for longer than one call.
    lock = threading.Lock()
    pool = SessionPool(factory, max_sessions=config.max_sessions,
                       idle_timeout=config.idle_timeout, compute_lock=lock)
    shape = shape_for(config.agentgym_env, config.dialect)
    app = build_app(pool, tasks, env_name=env_name, shape=shape, description=description,
                    reward=config.reward, max_action_chars=config.max_action_chars,
                    step_timeout=config.step_timeout, max_body_bytes=config.max_body_bytes,
                    body_timeout=config.body_timeout)
    summary = {"url": f"http://{config.host}:{config.port}", "env_name": env_name,
               "dream": config.em is not None, "dialect": shape.key, "shape": shape.name,
               "reward": config.reward, "tasks": len(tasks)}
    if config.item_ids is not None:
        summary["item_ids"] = str(write_item_ids(config.item_ids, config.agentgym_env,
                                                 len(tasks)))
    return app, pool, summary


def write_item_ids(path: Path, name: str, count: int) -> Path:
    """AgentGym-RL's training-data file: item `NAME_i` is reset with index i (atomic write)."""
    import json
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps([{"item_id": f"{name}_{i}"} for i in range(count)], indent=1))
    os.replace(tmp, path)
    return path


def run(config: ServeConfig, announce: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Serve until interrupted; the summary with session counts."""
    import uvicorn

    _check_port_free(config.host, config.port)
    app, pool, summary = prepare(config)
    if config.host not in LOOPBACK:
        print(f"warning: serving on {config.host}: anyone who can reach this port can use the "
              "env (the AgentGym protocol has no authentication)", file=sys.stderr)
    server = _stoppable_server_class()(uvicorn.Config(app, host=config.host, port=config.port,
                                                      log_level="warning", access_log=False))
    if announce is not None:
        announce(summary)
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind (taken between our check and now)
        raise InputError(f"cannot listen on {config.host}:{config.port}", field="port") from None
    finally:
        pool.close_all()
    return {**summary, **pool.stats}


def _stoppable_server_class():
    import uvicorn

    class StoppableServer(uvicorn.Server):
        """Ctrl-C / SIGTERM stop serving and return, so the summary is still printed (uvicorn
        itself re-raises the signal after shutting down, which ends the process first)."""

        def handle_exit(self, sig, frame) -> None:
            self.force_exit = self.should_exit  # a second Ctrl-C: stop waiting for requests
            self.should_exit = True

    return StoppableServer


def _check_port_free(host: str, port: int) -> None:
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise InputError(f"cannot resolve host {host!r} ({e})", field="host") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            raise InputError(f"cannot listen on {host}:{port} ({e.strerror}); pick another "
                             "--port", field="port") from None
