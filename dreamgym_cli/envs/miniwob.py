"""The MiniWoB++ adapter: Farama's `miniwob` pages in headless Debian Chromium, offline.

One Chromium per env instance, reused across tasks (a task switch loads another `file://` page
shipped in the `miniwob` wheel). miniwob's own `SeleniumInstance` runs the page protocol (seed,
start, DOM, reward); we only start the browser ourselves, with the flags that keep Chromium
headless and quiet offline (DESIGN §5). The state and action format is in `envs.miniwob_expert`.

Task spec: `{"task": "click-button", "seed": 1, "max_steps": 10, "time_limit_s": 60}`. The page
seed fixes the utterance and the layout. miniwob pages end an episode by themselves after their
timer (10 s by default); `time_limit_s` raises it, since an LLM policy may think for longer.

Actions map to miniwob's action space: `click [id]` = CLICK_ELEMENT(ref); `type [id] "text"` =
CLICK_ELEMENT(ref), PRESS_KEY(C-a) to select what the field holds, then TYPE_TEXT(text).
reward = 1.0 on the step that ends the episode with a positive raw miniwob reward (success),
0.0 otherwise; an episode also ends at `max_steps` (a failure). miniwob's raw and time-scaled
rewards are in `info`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from dreamgym_cli.envs.base import Observation, StepResult, check_step_limit, check_task_env
from dreamgym_cli.envs.miniwob_expert import (
    admissible_actions, elements_from_dom, expert_action, parse_action, render_state,
)
from dreamgym_cli.errors import InputError, unknown_name
from dreamgym_cli.schema import Task

ENV_NAME = "miniwob"
DEFAULT_MAX_STEPS = 10
DEFAULT_TIME_LIMIT_S = 60
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage", "--window-size=800,600")
INSTALL_HINT = ("MiniWoB++ needs the `web` extra (pip install 'dreamgym[web]') and Debian's "
                "chromium + chromium-driver (`make system-deps`)")


def browser_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) from MINIWOB_CHROME_BINARY/MINIWOB_CHROMEDRIVER or PATH."""
    chrome = os.environ.get("MINIWOB_CHROME_BINARY") or shutil.which("chromium") \
        or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = os.environ.get("MINIWOB_CHROMEDRIVER") or shutil.which("chromedriver")
    return (chrome, driver) if chrome and driver else None


@lru_cache(maxsize=1)
def available_tasks() -> tuple[str, ...]:
    """MiniWoB task names shipped in the wheel (flight.* pages need an HTTP server: left out)."""
    try:
        from miniwob.selenium_instance import HTML_DIR
    except ImportError:
        raise InputError(INSTALL_HINT, field="env") from None
    return tuple(sorted(p.stem for p in (Path(HTML_DIR) / "miniwob").glob("*.html")))


def check_task(name: Any, field: str = "suite") -> str:
    if not isinstance(name, str) or name not in available_tasks():
        raise unknown_name("MiniWoB task", str(name), available_tasks(), field=field)
    return name


def _page_instance(subdomain: str, driver):
    """miniwob's SeleniumInstance for one task page, driving our already-started browser."""
    from miniwob.selenium_instance import SeleniumInstance

    class _Page(SeleniumInstance):
        def create_driver(self):  # miniwob would start its own Chrome with fewer flags
            self.driver = driver
            self.driver.get(self.url)
            self.inner_width, self.inner_height = driver.execute_script(
                "return [window.innerWidth, window.innerHeight];")

    page = _Page(index=0, subdomain=subdomain, headless=True)
    page.record_screenshots = False  # the agent reads text; screenshots cost ~30 ms a step
    page.start()
    return page


class MiniWoBEnv:
    """A real MiniWoB++ env for tasks made by `dreamgym tasks make --env miniwob`."""

    name = ENV_NAME

    def __init__(self, max_steps: int | None = None, **_ignored: Any):
        self.max_steps_override = check_step_limit(max_steps)
        self._driver = None
        self._profile: str | None = None
        self._page = None
        self._subdomain: str | None = None
        self._elements: list = []
        self._fields: list = []
        self._utterance = ""
        self._t, self._limit, self._done = 0, DEFAULT_MAX_STEPS, True

    # -- browser

    def _start_browser(self):
        paths = browser_paths()
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError:
            raise InputError(INSTALL_HINT, field="env") from None
        if paths is None:
            raise InputError(f"no chromium/chromedriver found: {INSTALL_HINT}", field="env")
        options = webdriver.ChromeOptions()
        self._profile = tempfile.mkdtemp(prefix="dreamgym-chromium-")
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={self._profile}"):
            options.add_argument(flag)
        options.binary_location = paths[0]
        self._driver = webdriver.Chrome(service=Service(paths[1]), options=options)
        self._driver.implicitly_wait(5)
        atexit.register(self.close)  # worker processes exit without closing their envs

    def _open(self, subdomain: str):
        if self._driver is None:
            self._start_browser()
        if subdomain != self._subdomain:
            self._page = _page_instance(subdomain, self._driver)
            self._subdomain = subdomain

    # -- Env protocol

    def reset(self, task: Task) -> Observation:
        check_task_env(task, ENV_NAME)
        spec = task.spec
        subdomain = check_task(spec.get("task"), field="spec.task")
        seed = spec.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputError(f"expected an integer seed, got {seed!r}", field="spec.seed")
        self._limit = self.max_steps_override or _positive(spec, "max_steps", DEFAULT_MAX_STEPS)
        time_limit = _positive(spec, "time_limit_s", DEFAULT_TIME_LIMIT_S)
        self._open(subdomain)
        self._driver.execute_script(f"core.EPISODE_MAX_TIME = {int(time_limit * 1000)};")
        obs, infos = [{}], [{}]
        self._page.reset(obs, infos, seed)
        self._t, self._done = 0, False
        self._utterance = obs[0]["utterance"]
        self._fields = [tuple(f) for f in obs[0]["fields"]]
        self._elements = elements_from_dom(obs[0]["dom_elements"])
        return self._observation(None, done=False, success=False, info={"task": subdomain})

    def step(self, action: str) -> StepResult:
        if self._page is None or self._done:
            raise RuntimeError("the episode is over (or never started): call reset(task) first")
        feedback = self._perform(action)
        meta = self._page.get_metadata()
        self._t += 1
        raw = float(meta.get("raw_reward") or 0.0)
        ended = bool(meta["done"])
        success = ended and raw > 0
        truncated = not ended and self._t >= self._limit
        self._done = ended or truncated
        if not ended:
            obs, _ = self._page.get_observation(use_cached_fields=True)
            self._elements = elements_from_dom(obs["dom_elements"])
        info = {"raw_reward": raw, "env_reward": float(meta.get("env_reward") or 0.0),
                "reason": str(meta.get("reason")), "truncated": truncated, "moves": self._t}
        observation = self._observation(feedback, done=self._done, success=success, info=info)
        return StepResult(observation, 1.0 if success else 0.0, self._done, success, info)

    def expert_action(self) -> str | None:
        """The scripted expert's next action from the current page (None if it has no plan)."""
        if self._done or self._subdomain is None:
            return None
        return expert_action(self._subdomain, self._elements, self._fields)

    def close(self) -> None:
        if self._driver is not None:
            try:
                self._driver.quit()
            finally:
                self._driver = None
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None
        self._page, self._subdomain, self._done = None, None, True

    def __del__(self):
        self.close()

    # -- helpers

    def _perform(self, action: str) -> str | None:
        """Run the action in the page; the reason it could not run, or None."""
        parsed = parse_action(action)
        if parsed is None:
            return f'not an action: {action!r} (expected click [id] or type [id] "text")'
        verb, ref, text = parsed
        if ref not in {e.ref for e in self._elements}:
            return f"no element [{ref}] on the page"
        config = action_space_config()
        for miniwob_action in to_miniwob_actions(verb, ref, text, config):
            self._page.perform(miniwob_action, config)
        return None

    def _observation(self, feedback: str | None, *, done: bool, success: bool,
                     info: dict[str, Any]) -> Observation:
        text = render_state(self._utterance, self._elements, feedback=feedback, done=done,
                            success=success)
        admissible = [] if done else admissible_actions(self._elements, self._fields)
        return Observation(text, admissible, dict(info, utterance=self._utterance))


@lru_cache(maxsize=1)
def action_space_config():
    """The part of miniwob's action space our actions use (element refs, keys, text)."""
    from miniwob.action import ActionSpaceConfig, ActionTypes

    return ActionSpaceConfig(action_types=[ActionTypes.CLICK_ELEMENT, ActionTypes.PRESS_KEY,
                                           ActionTypes.TYPE_TEXT])


def to_miniwob_actions(verb: str, ref: int, text: str | None, config) -> list[dict[str, Any]]:
    """`click [ref]` -> [CLICK_ELEMENT]; `type [ref] "t"` -> [CLICK_ELEMENT, PRESS_KEY C-a,
    TYPE_TEXT t] (the click focuses the field, select-all makes the typing replace its text)."""
    from miniwob.action import ActionTypes

    kinds = config.action_types
    actions = [{"action_type": kinds.index(ActionTypes.CLICK_ELEMENT), "ref": ref}]
    if verb == "type":
        actions.append({"action_type": kinds.index(ActionTypes.PRESS_KEY),
                        "key": list(config.allowed_keys).index("C-a")})
        actions.append({"action_type": kinds.index(ActionTypes.TYPE_TEXT), "text": text})
    return actions


def _positive(spec: dict, key: str, default: int) -> int:
    value = spec.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InputError(f"expected a number > 0, got {value!r}", field=f"spec.{key}")
    return value


# ----------------------------------------------------------------------------------------------
# Tasks


def make_tasks(suite: list[str], seeds: list[int], split: str, max_steps: int | None,
               advance=lambda: None) -> list[Task]:
    """One task per (MiniWoB task, seed); the instruction is the page's utterance for that seed."""
    names = [check_task(name) for name in suite]
    env = MiniWoBEnv()
    tasks = []
    try:
        for name in names:
            for seed in seeds:
                spec = {"task": name, "seed": seed, "max_steps": max_steps or DEFAULT_MAX_STEPS,
                        "time_limit_s": DEFAULT_TIME_LIMIT_S}
                probe = Task(task_id=f"miniwob/{name}/seed-{seed}", env=ENV_NAME,
                             instruction="", spec=spec, split=split)
                observation = env.reset(probe)
                tasks.append(Task(task_id=probe.task_id, env=ENV_NAME, spec=spec, split=split,
                                  instruction=observation.info["utterance"]))
                advance()
    finally:
        env.close()
    return tasks
