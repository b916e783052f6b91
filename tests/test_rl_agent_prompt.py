"""The policy's prompt (DESIGN §9) and its action parser, which never raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamgym_cli.experience.prompt import render_history_pair
from dreamgym_cli.rl.agent_prompt import ParsedAction, build_agent_prompt, parse_action

STATE = "Location: Kitchen\nInventory: nothing\nActions: go east | take red key"


def words(text: str) -> int:
    return len(text.split())


def test_sections_in_order_with_admissible_actions():
    state = "Location: Kitchen\nInventory: nothing"
    prompt = build_agent_prompt("Take the red key.", [("Location: Hall", "go west")], state,
                                ["go east", "take red key"], think=True,
                                history_budget_tokens=500, count_tokens=words)
    heads = ["## Task\nTake the red key.", "## Recent history\n### 1 step ago", "## Current state\n"
             + state, "## Admissible actions\n- go east\n- take red key", "## Answer\n"]
    positions = [prompt.index(h) for h in heads]
    assert positions == sorted(positions)
    assert "<think>" in prompt and "<action>" in prompt


def test_actions_already_listed_by_the_state_are_not_repeated():
    listed = build_agent_prompt("Task.", [], STATE, ["go east", "take red key"], think=False,
                                history_budget_tokens=500, count_tokens=words)
    assert "## Admissible actions" not in listed and "Actions: go east | take red key" in listed
    other = build_agent_prompt("Task.", [], STATE, ["go east"], think=False,
                               history_budget_tokens=500, count_tokens=words)
    assert "## Admissible actions\n- go east" in other


def test_no_think_no_admissible_no_history():
    prompt = build_agent_prompt("Task.", [], STATE, None, think=False, history_budget_tokens=500,
                                count_tokens=words)
    assert "<think>" not in prompt and "<action>" in prompt
    assert "## Admissible actions" not in prompt and "## Recent history" not in prompt
    empty = build_agent_prompt("Task.", [], STATE, [], think=False, history_budget_tokens=500,
                               count_tokens=words)
    assert "## Admissible actions\n(none listed)" in empty


def test_history_budget_keeps_newest_whole_pairs():
    history = [(f"state {i} filler filler", f"act{i}") for i in range(5)]
    cost = words(render_history_pair(1, *history[-1]))
    prompt = build_agent_prompt("Task.", history, STATE, None, think=False,
                                history_budget_tokens=3 * cost, count_tokens=words)
    assert all(f"act{i}" in prompt for i in (2, 3, 4))
    assert "act1" not in prompt and "state 1 " not in prompt


@pytest.mark.parametrize("completion,expected", [
    ("<think>The key is here.</think><action>take red key</action>",
     ParsedAction("take red key", True, "The key is here.")),
    ("<action>  go\n east </action>", ParsedAction("go east", True, None)),
    ("<ACTION>open door", ParsedAction("open door", True, None)),  # stopped at </action>
    ("<action>  </action>", ParsedAction("", False, None)),
    # no tags: first non-empty line after the think block, flagged
    ("<think>hmm</think>\n\n  Action: go east\nthen more", ParsedAction("go east", False, "hmm")),
    ("\n\ntake red key\n", ParsedAction("take red key", False, None)),
    ("", ParsedAction("", False, None)),
    ("<think>never closed, never acted", ParsedAction("", False, "never closed, never acted")),
])
def test_parse_action(completion, expected):
    assert parse_action(completion) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["<action>", "</action>", "<think>", "</think>", "\n",
                                           "Action:"]), st.text(max_size=15)),
                max_size=30).map("".join))
def test_parse_action_never_raises(text):
    parsed = parse_action(text)
    assert isinstance(parsed.action, str) and "\n" not in parsed.action
    assert parsed.valid_format == bool(parsed.valid_format and parsed.action)


def test_parse_action_on_non_text():
    assert parse_action(None) == ParsedAction("", False, None)  # type: ignore[arg-type]
