"""The deterministic offline annotator on hand-written TextWorld-style abstract states."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dreamgym_cli.experience.annotate_rules import explain_transition, parse_abstract_state

GOAL = ("Welcome to TextWorld! First, go east into the pantry. Then take the red apple from the "
        "shelf and put it on the kitchen table.")
KITCHEN = """Location: Kitchen
Description: You are in a kitchen. A normal one. There is an exit to the east.
Objects: a wooden table, a red key
Inventory: nothing
Actions: examine wooden table | go east | look | take red key"""
KITCHEN_TOOK_KEY = """Feedback: You pick up the red key from the ground.
Location: Kitchen
Description: You are in a kitchen. A normal one. There is an exit to the east.
Objects: a wooden table
Inventory: a red key
Actions: drop red key | examine wooden table | go east | look | put red key on wooden table"""
PANTRY = """Feedback: -= Pantry =-
You've entered a pantry.
Location: Pantry
Description: You've entered a pantry. There is a shelf here.
Objects: a shelf, a red apple
Inventory: a red key
Actions: go west | take red apple"""
KITCHEN_REFUSED = """Feedback: You can't go that way.
Location: Kitchen
Description: You are in a kitchen. A normal one. There is an exit to the east.
Objects: a wooden table, a red key
Inventory: nothing
Actions: examine wooden table | go east | look | take red key"""


def test_parse_reads_every_field():
    s = parse_abstract_state(PANTRY)
    assert s["structured"] is True
    assert s["feedback"] == "-= Pantry =-\nYou've entered a pantry."  # continuation line kept
    assert s["location"] == "Pantry"
    assert s["description"] == "You've entered a pantry. There is a shelf here."
    assert s["objects"] == ["a shelf", "a red apple"]
    assert s["inventory"] == ["a red key"]
    assert s["actions"] == ["go west", "take red apple"]


def test_parse_is_tolerant_of_missing_lines_and_empty_lists():
    s = parse_abstract_state("Location: Hall\nInventory: nothing\nObjects: none\nActions: ")
    assert (s["feedback"], s["description"]) == (None, None)
    assert (s["inventory"], s["objects"], s["actions"]) == ([], [], [])
    raw = parse_abstract_state("[button] Submit\n[input] name")
    assert raw["structured"] is False and raw["location"] is None
    assert raw["raw"] == "[button] Submit\n[input] name"


def test_taking_an_item_explains_inventory_and_objects():
    text = explain_transition(GOAL, KITCHEN, "take red key", KITCHEN_TOOK_KEY, 0.0, False, False)
    assert "The agent now carries a red key." in text
    assert "No longer visible: a red key." in text
    assert 'The game replied: "You pick up the red key from the ground."' in text
    assert "No points were scored (reward 0)." in text
    assert "The episode continues." in text
    assert "moved" not in text  # same room: no made-up movement


def test_moving_with_a_reward_explains_the_score():
    text = explain_transition(GOAL, KITCHEN_TOOK_KEY, "go east", PANTRY, 1.0, False, False)
    assert "The agent moved from Kitchen to Pantry." in text
    assert "In Pantry it sees a shelf and a red apple." in text
    assert "carries" not in text  # the inventory did not change
    assert "visible" not in text  # another room's objects are not "appearing" objects
    assert "The score went up by 1: this action was progress toward the goal" in text
    assert "Welcome to TextWorld! First, go east into the pantry." in text


def test_a_refused_action_is_explained_as_having_no_effect():
    text = explain_transition(GOAL, KITCHEN, "go north", KITCHEN_REFUSED, 0.0, False, False)
    assert "The game refused the action, so nothing in the world changed." in text


def test_an_inadmissible_action_without_a_refusal_message():
    nxt = KITCHEN.replace("Location:", "Feedback: Hmm.\nLocation:", 1)
    text = explain_transition(GOAL, KITCHEN, "dance wildly", nxt, 0.0, False, False)
    assert "'dance wildly' is not one of the admissible commands" in text


def test_an_informative_action_only_produces_a_reply():
    nxt = KITCHEN.replace("Location:", "Feedback: The wooden table is sturdy.\nLocation:", 1)
    text = explain_transition(GOAL, KITCHEN, "examine wooden table", nxt, 0.0, False, False)
    assert "it only produced the game's reply" in text
    assert "refused" not in text


def test_why_the_episode_ended():
    won = PANTRY.replace("Feedback: -= Pantry =-", "Feedback: *** The End ***")
    assert "ended because the goal was achieved" in explain_transition(
        GOAL, KITCHEN_TOOK_KEY, "go east", won, 1.0, True, True)
    lost = PANTRY.replace("Feedback: -= Pantry =-", "Feedback: *** You lost! ***")
    assert "ended in failure: the game was lost" in explain_transition(
        GOAL, KITCHEN_TOOK_KEY, "eat red key", lost, 0.0, True, False)
    assert "the step limit was reached" in explain_transition(
        GOAL, KITCHEN_TOOK_KEY, "go east", PANTRY, 0.0, True, False)


def test_dropping_an_item_and_other_rewards():
    dropped = KITCHEN.replace("Location:", "Feedback: You drop the red key.\nLocation:", 1)
    text = explain_transition(GOAL, KITCHEN_TOOK_KEY, "drop red key", dropped, -1.0, False, False)
    assert "The agent no longer carries a red key." in text
    assert "Now visible: a red key." in text
    assert "The reward is -1: the action was penalised." in text
    assert "The reward is unknown." in explain_transition(GOAL, KITCHEN, "look", KITCHEN, None,
                                                          False, None)


def test_unstructured_states_fall_back_to_raw_text():
    same = explain_transition("Click submit.", "[1] button: Submit", "click [1]",
                              "[1] button: Submit", 0.0, False, None)
    assert "changed neither" in same
    changed = explain_transition("Click submit.", "[1] button: Submit", "click [1]",
                                 "[2] text: Thanks!", 1.0, True, True)
    assert "The observation changed." in changed and "goal was achieved" in changed


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300), st.text(max_size=40),
       st.one_of(st.none(), st.floats()), st.booleans(), st.one_of(st.none(), st.booleans()))
def test_any_input_gives_the_same_text_twice(state, nxt, action, reward, done, success):
    first = explain_transition(GOAL, state, action, nxt, reward, done, success)
    assert first == explain_transition(GOAL, state, action, nxt, reward, done, success)
    assert first.startswith(f"The agent's action was '{action}'.")
