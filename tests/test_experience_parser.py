"""The experience-model parser: tolerant of sloppiness, strict on meaning, never raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamgym_cli.experience.parser import (INVALID_NEXT_STATE, ParsedTransition,
                                            invalid_transition, parse_em_completion)
from dreamgym_cli.experience.prompt import canonical_body, format_em_completion
from dreamgym_cli.experience.tags import ALL_TAGS

GOOD = ("<think>Taking the key moves it to the inventory.</think>\n"
        "<next_state>Feedback: You take the key.\nLocation: Kitchen\nInventory: key</next_state>\n"
        "<reward>1</reward>\n<done>false</done>\n<success>false</success>")


def test_a_well_formed_completion():
    p = parse_em_completion(GOOD)
    assert p == ParsedTransition(
        valid=True, next_state="Feedback: You take the key.\nLocation: Kitchen\nInventory: key",
        reward=1.0, done=False, success=False,
        reasoning="Taking the key moves it to the inventory.", error=None)


@pytest.mark.parametrize("text,reward,done,success", [
    # whitespace, tag case, boolean spellings, signed rewards, chatter around the tags
    ("<next_state>\n  S \n</next_state><reward> +1 </reward><done> True </done>", 1.0, True, None),
    ("<NEXT_STATE>S</Next_State><Reward>-0.5</Reward><DONE>1</DONE><success>YES</success>",
     -0.5, True, True),
    ("Sure!\n<next_state>S</next_state>\n<reward>.5</reward>\n<done>no</done>\n"
     "<success>unknown</success> bye", 0.5, False, None),
    ("<next_state>S</next_state><reward>1e-3</reward><done>0</done><success>null</success>",
     0.001, False, None),
    # generation stopped at a closing tag: the last body runs to the end of the text
    ("<next_state>S</next_state><reward>0</reward><done>true</done><success>true", 0.0, True, True),
    # a missing closing tag ends at the next field's opening tag
    ("<think>hmm<next_state>S<reward>1.0</reward><done>false</done>", 1.0, False, None),
    # a scalar closed by the wrong tag (seen from tiny models): its body ends at that tag
    ("<next_state>S</next_state><reward>1.0</reward><done>false</done>\n<success>false</done>\n"
     "<done>false</done>\n<done>false</success>", 1.0, False, False),
    ("<next_state>S</next_state><reward>0</done><done>true</success>", 0.0, True, None),
])
def test_tolerated_sloppiness(text, reward, done, success):
    p = parse_em_completion(text)
    assert p.valid, p.error
    assert (p.next_state, p.reward, p.done, p.success) == ("S", reward, done, success)


@pytest.mark.parametrize("text,error", [
    ("<reward>1</reward><done>true</done>", "missing <next_state>"),
    ("<next_state>   </next_state><reward>1</reward><done>true</done>", "empty <next_state>"),
    ("<next_state>S</next_state><done>true</done>", "missing <reward>"),
    ("<next_state>S</next_state><reward>one</reward><done>true</done>", "<reward> is not"),
    ("<next_state>S</next_state><reward>nan</reward><done>true</done>", "<reward> is not"),
    ("<next_state>S</next_state><reward>inf</reward><done>true</done>", "<reward> is not"),
    ("<next_state>S</next_state><reward>1</reward>", "missing <done>"),
    ("<next_state>S</next_state><reward>1</reward><done>maybe</done>", "<done> is not"),
    ("<next_state>S</next_state><reward>1</reward><done>1</done><success>kinda</success>",
     "<success> is not"),
    # truncated mid-state: the state runs to the end, the reward never came
    ("<think>ok</think><next_state>Location: Kit", "missing <reward>"),
    ("", "missing <next_state>"),
])
def test_meaning_is_never_guessed(text, error):
    p = parse_em_completion(text)
    assert not p.valid
    assert error in p.error


def test_think_mentioning_a_tag_does_not_start_that_field():
    text = ("<think>I will write <next_state> carefully.</think><next_state>S</next_state>"
            "<reward>0</reward><done>false</done>")
    p = parse_em_completion(text)
    assert p.valid and p.next_state == "S"
    assert p.reasoning == "I will write <next_state> carefully."


def test_duplicated_fields_keep_the_first():
    text = ("<next_state>A</next_state><reward>1</reward><done>true</done>"
            "<next_state>B</next_state><reward>0</reward><done>false</done>")
    p = parse_em_completion(text)
    assert (p.next_state, p.reward, p.done) == ("A", 1.0, True)


def test_non_text_input_is_an_invalid_transition():
    for value in (None, 3, b"<next_state>", ["x"]):
        p = parse_em_completion(value)  # type: ignore[arg-type]
        assert not p.valid and "not text" in p.error


def test_invalid_transition_is_an_explicit_failure():
    state = "Feedback: You open the door.\nLocation: Hall\nInventory: key"
    t = invalid_transition(state, "missing <reward>")
    assert (t.valid, t.reward, t.done, t.success, t.error) == (
        False, 0.0, True, False, "missing <reward>")
    assert t.next_state == f"{INVALID_NEXT_STATE}\nLocation: Hall\nInventory: key"
    assert invalid_transition("", "x").next_state == INVALID_NEXT_STATE


# ---------------------------------------------------------------------------------------- fuzz

ANY_TEXT = st.text(max_size=400)
MARKERS = st.sampled_from([f"<{t}>" for t in ALL_TAGS] + [f"</{t}>" for t in ALL_TAGS]
                          + [f"<{t.upper()}>" for t in ALL_TAGS] + ["<", ">", "</", "\n"])
TAG_SOUP = st.lists(st.one_of(MARKERS, st.text(max_size=12),
                              st.sampled_from(["true", "false", "1", "+1", "nan", "1e309"])),
                    max_size=60).map("".join)
BODY = st.one_of(st.text(min_size=1, max_size=200),
                st.lists(st.one_of(MARKERS, st.text(max_size=12)), min_size=1).map("".join))


def check(p: ParsedTransition) -> None:
    assert isinstance(p, ParsedTransition)
    assert p.valid == (p.error is None)
    if p.valid:
        assert p.next_state and p.next_state == p.next_state.strip()


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_random_text_never_raises(text):
    check(parse_em_completion(text))


@settings(max_examples=400, deadline=None)
@given(TAG_SOUP)
def test_tag_soup_never_raises(text):
    check(parse_em_completion(text))


@settings(max_examples=200, deadline=None)
@given(BODY, BODY, st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
       st.one_of(st.none(), st.booleans()), st.booleans())
def test_valid_completions_round_trip_exactly(reasoning, state, reward, done, success, think):
    if not canonical_body(state):
        return  # an empty state is no target (format_em_completion refuses it, tested above)
    text = format_em_completion(reasoning, state, reward, done, success, with_reasoning=think)
    p = parse_em_completion(text)
    assert p.valid, p.error
    assert p.next_state == canonical_body(state)
    assert p.reward == reward and p.done == done and p.success == success
    assert p.reasoning == (canonical_body(reasoning) if think else None)
    # canonical bodies are fixed points: a parsed transition formats to the same text
    assert format_em_completion(p.reasoning, p.next_state, p.reward, p.done, p.success,
                                with_reasoning=think) == text


@settings(max_examples=200, deadline=None)
@given(BODY, st.floats(allow_nan=False, allow_infinity=False), st.data())
def test_truncated_valid_completions_never_raise(state, reward, data):
    if not canonical_body(state):
        return
    text = format_em_completion("why", state, reward, True, True)
    cut = data.draw(st.integers(0, len(text)))
    p = parse_em_completion(text[:cut])
    check(p)
    if p.valid:  # only a cut inside the trailing tags can still be read
        assert p.next_state == canonical_body(state) and p.reward == reward


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 5), TAG_SOUP)
def test_nested_and_duplicated_tags_never_raise(depth, noise):
    nested = "<next_state>" * depth + noise + "</next_state>" * depth
    check(parse_em_completion(nested + "<reward>1</reward><done>true</done>" * depth))


def test_enormous_inputs_are_parsed():
    # linear scan: 150k unclosed markers and 200k stray closing tags take well under a second
    soup = "<think><next_state><reward>" * 50_000
    p = parse_em_completion(soup)
    assert not p.valid
    big_state = "Location: Hall\n" * 200_000
    text = format_em_completion("r" * 100_000, big_state, 1.0, True, None)
    p = parse_em_completion(text)
    assert p.valid and p.next_state == big_state.strip()
    closes_only = "</next_state>" * 100_000 + "</reward>" * 100_000
    assert not parse_em_completion(closes_only).valid


def test_unicode_is_kept_verbatim():
    state = "Location: Küche 厨房\nInventory: 🔑, ſword, K-lamp"
    p = parse_em_completion(format_em_completion("ça va", state, 0.0, False, False))
    assert p.valid and p.next_state == state and p.reasoning == "ça va"
    # only ASCII case-folding for tag names: the Kelvin sign 'K' does not spell "think"
    p = parse_em_completion("<thin\u212a>x<next_state>S</next_state><reward>0</reward>"
                            "<done>true</done><ſuccess>true</ſuccess>")
    assert p.valid and p.reasoning is None and p.success is None
