"""`registry.check_env_name`: a name is checked as `make_env` checks it, without building the env
(no browser for MiniWoB, no model for the dream env, no connection for an AgentGym server)."""

from __future__ import annotations

import pytest

from dreamgym_cli.envs.registry import check_env_name, make_env
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import Task


@pytest.fixture
def built(monkeypatch) -> list[str]:
    """The names of our env classes constructed (or browsers started) during the test."""
    from dreamgym_cli.envs.agentgym import AgentGymEnv
    from dreamgym_cli.envs.alfworld import AlfWorldEnv
    from dreamgym_cli.envs.babyai import BabyAIEnv
    from dreamgym_cli.envs.dream import DreamEnv
    from dreamgym_cli.envs.miniwob import MiniWoBEnv
    from dreamgym_cli.envs.scienceworld import ScienceWorldEnv
    from dreamgym_cli.envs.textworld import TextWorldEnv
    from dreamgym_cli.envs.webarena import BrowserGymEnv, WebArenaEnv

    calls: list[str] = []

    def recording(cls, method):
        original = getattr(cls, method)

        def wrapper(self, *args, **kwargs):
            calls.append(f"{cls.__name__}.{method}")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, wrapper)

    for cls in (AgentGymEnv, AlfWorldEnv, BabyAIEnv, DreamEnv, MiniWoBEnv, ScienceWorldEnv,
                TextWorldEnv, BrowserGymEnv, WebArenaEnv):
        recording(cls, "__init__")
    recording(MiniWoBEnv, "_start_browser")
    return calls


def test_recorder_sees_a_built_env(built):
    make_env("miniwob").close()  # the recorder itself works: building one is recorded
    assert built == ["MiniWoBEnv.__init__"]


def test_valid_real_names_build_nothing(built, monkeypatch):
    from dreamgym_cli.envs.webarena import WA_VARS

    for var in WA_VARS:
        monkeypatch.setenv(var, f"http://wa.example/{var.lower()}")
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    for name in ("miniwob", "textworld", "scienceworld", "babyai", "webarena", "alfworld",
                 "agentgym:webshop@127.0.0.1:1"):
        assert check_env_name(name) is None
    assert built == []  # no env object, no Chromium


def test_bad_names_fail_as_make_env_fails(built, monkeypatch, tmp_path):
    with pytest.raises(InputError, match="did you mean 'miniwob'") as checked:
        check_env_name("miniwb")
    with pytest.raises(InputError) as made:
        make_env("miniwb")
    assert checked.value.message == made.value.message and checked.value.field == "env"
    with pytest.raises(InputError, match="unknown environment 'dreem:EM'"):
        check_env_name("dreem:EM")  # an unknown prefix
    with pytest.raises(InputError, match="agentgym:<name>@<url>"):
        check_env_name("agentgym:webshop")  # no server address
    monkeypatch.delenv("WA_MAP", raising=False)
    with pytest.raises(InputError, match="WA_MAP"):  # what WebArenaEnv checks first
        check_env_name("webarena")
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "missing"))
    with pytest.raises(InputError, match="ALFWorld data directory not found"):
        check_env_name("alfworld")
    assert built == []


def test_dream_name_checks_the_em_dir_without_loading_it(built, tmp_path):
    from dreamgym_cli.experience.examples import EMSettings

    with pytest.raises(InputError, match="not an experience-model directory") as e:
        check_env_name(f"dream:{tmp_path}")
    assert e.value.field == "env"
    EMSettings().save(tmp_path)
    check_env_name(f"dream:{tmp_path}")  # no weights there: nothing is loaded
    assert built == []


def test_serve_checks_a_miniwob_name_without_a_browser(built, tmp_path):
    from dreamgym_cli.stages.serve import ServeConfig, prepare
    from dreamgym_cli.trajectories import write_tasks

    tasks = tmp_path / "T.jsonl"
    write_tasks(tasks, [Task(task_id="miniwob/click-button/seed-1", env="miniwob",
                             instruction="Click on the button.",
                             spec={"subdomain": "click-button", "seed": 1})])
    _, pool, summary = prepare(ServeConfig(env="miniwob", tasks=tasks))
    try:
        assert summary["env_name"] == "miniwob" and summary["tasks"] == 1
        assert built == []  # sessions build their env on /create, the check built none
    finally:
        pool.close_all()
    with pytest.raises(InputError, match="did you mean 'miniwob'"):
        prepare(ServeConfig(env="miniwb", tasks=tasks))
