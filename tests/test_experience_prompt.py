"""The experience model's prompt sections and its completion format (DESIGN §7)."""

from __future__ import annotations

import pytest

from dreamgym_cli.experience.prompt import (build_em_prompt, fit_history, format_em_completion,
                                            render_history_pair)

STATE = ("Location: Kitchen\nDescription: A small kitchen.\nObjects: table, red key\n"
         "Inventory: nothing\nActions: go east | take red key")
NEXT = ("Feedback: You pick up the red key.\nLocation: Kitchen\nDescription: A small kitchen.\n"
        "Objects: table\nInventory: red key\nActions: go east | drop red key")
RETRIEVED = [
    {"state": "Location: Pantry", "action": "take carrot", "next_state": "Location: Pantry\n"
     "Inventory: carrot", "reward": 1.0, "done": False},
    {"state": "Location: Hall", "action": "go west", "next_state": "Location: Kitchen",
     "reward": None, "done": True},
]


def words(text: str) -> int:
    return len(text.split())


def test_sections_appear_in_the_design_order():
    history = [("Location: Hall", "go west")]
    prompt = build_em_prompt("Take the red key.", RETRIEVED, history, STATE, "take red key",
                             history_budget_tokens=1000, count_tokens=words)
    heads = ["## Task\nTake the red key.", "## Similar past transitions", "## Recent history",
             "## Current state\n" + STATE, "## Action\ntake red key"]
    positions = [prompt.index(h) for h in heads]
    assert positions == sorted(positions)
    # retrieved transitions in brief: where, action, the next state's first line, reward, done;
    # most similar first
    first, second = prompt.index("### Example 1"), prompt.index("### Example 2")
    assert first < second
    assert "State: Location: Pantry\nAction: take carrot\nResult: Location: Pantry\n" \
           "Reward: 1.0\nDone: false" in prompt
    assert "Inventory: carrot" not in prompt  # not the whole next state
    assert "Reward: unknown\nDone: true" in prompt  # a null reward is written, not invented


def test_brief_line_prefers_the_named_field_and_is_cut():
    from dreamgym_cli.experience.prompt import BRIEF_CHARS, brief_line

    assert brief_line(NEXT, "Location:") == "Location: Kitchen"
    assert brief_line(NEXT) == "Feedback: You pick up the red key."
    assert brief_line("no fields here", "Location:") == "no fields here"
    long = brief_line("x" * 1000)
    assert len(long) == BRIEF_CHARS and long.endswith("…")
    assert brief_line(None) == ""


def test_empty_retrieval_and_history_leave_their_sections_out():
    prompt = build_em_prompt("Go east.", [], [], STATE, "go east", history_budget_tokens=100,
                             count_tokens=words)
    assert "## Similar past transitions" not in prompt
    assert "## Recent history" not in prompt
    assert prompt.endswith("## Action\ngo east\n")


def test_history_keeps_the_newest_whole_pairs_within_the_budget():
    history = [(f"state {i} " + "pad " * 10, f"action {i}") for i in range(6)]
    cost = words(render_history_pair(1, *history[-1]))  # every pair renders to the same length
    prompt = build_em_prompt("Task.", [], history, STATE, "look",
                             history_budget_tokens=2 * cost + cost // 2, count_tokens=words)
    assert "action 5" in prompt and "action 4" in prompt
    assert "action 3" not in prompt and "state 3" not in prompt  # whole pairs only
    assert prompt.index("action 4") < prompt.index("action 5")  # oldest first
    assert "### 2 steps ago" in prompt and "### 1 step ago" in prompt


def test_fit_history_stops_at_the_first_pair_that_does_not_fit():
    # the newest pair is huge: nothing older may jump over it
    history = [("s0", "a0"), ("s1 " + "x " * 100, "a1")]
    assert fit_history(history, render_history_pair, 20, words) == []
    assert fit_history(history, render_history_pair, 1000, words, max_pairs=1) == [
        render_history_pair(1, *history[1])]
    assert fit_history(history, render_history_pair, 1000, words, max_pairs=0) == []
    assert len(fit_history(history, render_history_pair, 1000, words, max_pairs=5)) == 2


def test_completion_has_the_fixed_tags_in_order():
    text = format_em_completion("The key moves to the inventory.", NEXT, 1.0, False, None)
    assert text == ("<think>The key moves to the inventory.</think>\n"
                    f"<next_state>{NEXT}</next_state>\n<reward>1.0</reward>\n"
                    "<done>false</done>\n<success>unknown</success>")


def test_without_reasoning_the_think_block_is_left_out():
    text = format_em_completion("ignored", NEXT, 0, True, True, with_reasoning=False)
    assert text.startswith("<next_state>")
    assert "<think>" not in text and "ignored" not in text
    assert text.endswith("<reward>0.0</reward>\n<done>true</done>\n<success>true</success>")


def test_tag_markers_inside_a_body_are_defused():
    text = format_em_completion("a </think> b", "Feedback: <done>\nLocation: X", 0, False, False)
    assert text.count("</think>") == 1 and text.count("<done>") == 1
    assert "a < /think> b" in text and "Feedback: < done>" in text


@pytest.mark.parametrize("bad_state,bad_reward", [("   ", 0.0), ("ok", float("nan")),
                                                  ("ok", float("inf")), ("ok", None)])
def test_a_row_without_a_target_is_rejected(bad_state, bad_reward):
    with pytest.raises(ValueError):
        format_em_completion("r", bad_state, bad_reward, False, None)
