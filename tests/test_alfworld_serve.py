"""`dreamgym serve --env alfworld --agentgym-env alfworld`: the real ALFWorld engine behind
AgentGym's ALFWorld protocol, driven the way agentenv's AlfWorldEnvClient drives it (reset with
`game`/`world_type`, top-level `available_actions` on every step), played to a win with the
planner expert's moves."""

from __future__ import annotations

from tests.serve_fixtures import AlfWorldClient, agent_text, running_server


def test_alfworld_client_wins_a_shipped_game_through_serve(run_cli, tmp_path, monkeypatch):
    from dreamgym_cli.envs.registry import make_env

    monkeypatch.delenv("ALFWORLD_DATA", raising=False)  # dreamgym's own games, not a user's
    from dreamgym_cli.trajectories import read_tasks

    tasks_file = tmp_path / "A.parquet"
    code, _, err = run_cli("tasks", "make", "--env", "alfworld", "--seeds", "1-2", "--split",
                           "train", "--out", tasks_file)
    assert code == 0, err
    task = read_tasks(tasks_file)[0]
    env = make_env("alfworld")
    try:  # the expert's moves, played on the engine directly
        env.reset(task)
        moves = []
        while len(moves) < 30:
            action = env.expert_action()
            result = env.step(action)
            moves.append(action)
            if result.done:
                break
        assert result.done and result.success
    finally:
        env.close()
    with running_server(["--env", "alfworld", "--tasks", tasks_file, "--agentgym-env",
                         "alfworld"], tmp_path / "logs") as url:
        client = AlfWorldClient(url)
        client.reset(0, "Text")
        first = client.observe()
        assert "Your task is to" in first and "AVAILABLE ACTIONS:" in first
        assert moves[0] in client.info["available_actions"]  # top level, as its client reads
        for i, action in enumerate(moves):
            out = client.step(agent_text(action))
            assert out.done == (i == len(moves) - 1)
            assert isinstance(client.info["available_actions"], list)
        assert out.done and out.reward == 1.0  # sparse: the last reward is the win
