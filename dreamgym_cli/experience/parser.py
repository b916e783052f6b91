"""Read an experience-model completion back into a transition. Never raises.

Tolerant where a model is plausibly sloppy: whitespace around bodies, tag-name case, `True`/`yes`/
`1` for booleans, `+1` for a reward, a missing closing tag (see `tags.read_tags`), a missing
`<success>` (→ None), text before or after the tags, and a scalar (reward, done, success) closed
by the wrong tag: its body ends at the first tag of any name, so `<success>false</done>` reads as
false (small models mix up the closing tags of the last three fields). Strict where meaning would be guessed: a
missing or empty next state, a missing or non-numeric reward, a missing or unreadable done, an
unreadable success make the transition invalid with an error that says which. The dream env
retries invalid completions and, after `--max-retries`, uses `invalid_transition`.
"""

from __future__ import annotations

import dataclasses
import math

from dreamgym_cli.experience.prompt import UNKNOWN
from dreamgym_cli.experience.tags import DONE, NEXT_STATE, REWARD, SUCCESS, THINK, read_tags

TRUE_WORDS = frozenset({"true", "yes", "1"})
FALSE_WORDS = frozenset({"false", "no", "0"})
UNKNOWN_WORDS = frozenset({UNKNOWN, "none", "null", "n/a", ""})
INVALID_NEXT_STATE = (
    "Feedback: The simulation failed: the experience model gave no valid next state, "
    "so the episode ends here."
)


@dataclasses.dataclass(frozen=True)
class ParsedTransition:
    """One parsed completion; when `valid` is False, `error` says what was wrong."""

    valid: bool
    next_state: str
    reward: float
    done: bool
    success: bool | None
    reasoning: str | None
    error: str | None = None


def _failed(error: str, reasoning: str | None = None) -> ParsedTransition:
    return ParsedTransition(valid=False, next_state="", reward=0.0, done=True, success=False,
                            reasoning=reasoning, error=error)


def parse_bool(text: str) -> bool | None:
    """True/False for the accepted spellings, None for anything else."""
    word = text.strip().lower()
    return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None


def parse_reward(text: str) -> float | None:
    """A finite float ('1', '+1', '-0.5', '1e-3', '1.0'), else None."""
    word = text.strip()
    if not word or len(word) > 64:  # no number needs more; keeps float() cheap on garbage
        return None
    try:
        value = float(word)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _scalar(body: str) -> str:
    """A scalar field's body up to the first tag of any name (see the module doc)."""
    return body.split("<", 1)[0]


def _parse(text: str) -> ParsedTransition:
    fields, _ = read_tags(text)
    for name in (REWARD, DONE, SUCCESS):
        if name in fields:
            fields[name] = _scalar(fields[name])
    reasoning = fields[THINK].strip() if THINK in fields else None
    if NEXT_STATE not in fields:
        return _failed("missing <next_state>", reasoning)
    next_state = fields[NEXT_STATE].strip()
    if not next_state:
        return _failed("empty <next_state>", reasoning)
    if REWARD not in fields:
        return _failed("missing <reward>", reasoning)
    reward = parse_reward(fields[REWARD])
    if reward is None:
        return _failed(f"<reward> is not a finite number: {fields[REWARD].strip()[:40]!r}",
                       reasoning)
    if DONE not in fields:
        return _failed("missing <done>", reasoning)
    done = parse_bool(fields[DONE])
    if done is None:
        return _failed(f"<done> is not true/false: {fields[DONE].strip()[:40]!r}", reasoning)
    success = None
    if SUCCESS in fields and fields[SUCCESS].strip().lower() not in UNKNOWN_WORDS:
        success = parse_bool(fields[SUCCESS])
        if success is None:
            return _failed(f"<success> is not true/false/unknown: "
                           f"{fields[SUCCESS].strip()[:40]!r}", reasoning)
    return ParsedTransition(valid=True, next_state=next_state, reward=reward, done=done,
                            success=success, reasoning=reasoning)


def parse_em_completion(text: str) -> ParsedTransition:
    """The transition an experience-model completion describes; never raises, on any input."""
    if not isinstance(text, str):
        return _failed(f"completion is not text ({type(text).__name__})")
    try:
        return _parse(text)
    except Exception as exc:  # noqa: BLE001 — the contract is "never raises"; report, don't crash
        return _failed(f"parser error: {type(exc).__name__}: {exc}"[:200])


def invalid_transition(state: str, error: str) -> ParsedTransition:
    """The explicit failure the dream env uses once retries are spent.

    Reward 0, done, not a success; the next state says the simulation failed (as its `Feedback:`
    line) followed by the last state without its own feedback, so the final observation keeps the
    abstract-state form and still shows where the agent was.
    """
    lines = (state or "").splitlines()
    if lines and lines[0].lower().startswith("feedback:"):
        lines = lines[1:]
    next_state = "\n".join([INVALID_NEXT_STATE, *lines]).strip()
    return ParsedTransition(valid=False, next_state=next_state, reward=0.0, done=True,
                            success=False, reasoning=None, error=error)
