"""WebArena-Lite adapter: accessibility tree → web state, action translation, the URL check, and
the env loop in a real headless Chromium on local pages (BrowserGym's OpenEndedTask).

No WebArena site can run here, so the state mapping is tested on recorded trees written in
BrowserGym's `axtree_object` format: Chrome DevTools `Accessibility.getFullAXTree` nodes
(`nodeId`, `role.value`, `name.value`, `childIds`, `ignored`, optional `value.value`) carrying
BrowserGym's `browsergym_id`, as `browsergym.core.env.BrowserEnv` returns them (see
`browsergym.utils.obs.flatten_axtree_to_str`), plus `extra_element_properties` by bid.
"""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from dreamgym_cli.envs.registry import make_env
from dreamgym_cli.envs.webarena import (WA_VARS, ActionError, axtree_elements, make_tasks,
                                        relevant_elements, render_web_state, translate_action)
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import Task


def node(node_id, role, name=None, children=(), bid=None, value=None, ignored=False):
    n = {"nodeId": str(node_id), "ignored": ignored, "role": {"type": "role", "value": role},
         "childIds": [str(c) for c in children]}
    if name is not None:
        n["name"] = {"type": "computedString", "value": name}
    if bid is not None:
        n["browsergym_id"] = str(bid)
    if value is not None:
        n["value"] = {"type": "string", "value": value}
    return n


# A shopping-admin order page, as BrowserGym would record it (abridged).
ORDER_PAGE = {"nodes": [
    node(1, "RootWebArea", "Orders / Sales / Magento Admin", [2, 3, 30], bid=None),
    node(2, "none", None, [4, 5, 6, 7], ignored=True),
    node(4, "link", "Dashboard", [40], bid=101),
    node(40, "StaticText", "Dashboard"),
    node(5, "link", "Sales", [], bid=102),
    node(6, "link", "Catalog", [], bid=103),
    node(7, "link", "Customers", [], bid=104),
    node(3, "generic", "", [8, 9, 10, 11, 12], bid=105),
    node(8, "heading", "Orders", [80], bid=106),
    node(80, "InlineTextBox", "Orders"),
    node(9, "textbox", "Search by keyword", [], bid=107, value="shoes"),
    node(10, "button", "Search", [], bid=108),
    node(11, "paragraph", "", [110, 111], bid=109),
    node(110, "StaticText", "Grace Nguyen placed 3 orders;"),
    node(111, "StaticText", "the latest was canceled."),
    node(12, "button", "Export", [], bid=110),
    node(30, "link", "Hidden admin link", [], bid=111),
]}
VISIBILITY = {"111": {"visibility": 0.0, "clickable": True}, "108": {"visibility": 1.0}}


def test_tree_elements_are_named_visible_non_text_nodes_in_page_order():
    elements = axtree_elements(ORDER_PAGE, VISIBILITY)
    assert [e.bid for e in elements] == ["101", "102", "103", "104", "106", "107", "108", "109",
                                         "110"]  # no root, ignored, generic, text or hidden node
    assert elements[5].line() == "[107] textbox: Search by keyword (value: shoes)"
    assert elements[7].line() == ("[109] paragraph: Grace Nguyen placed 3 orders; the latest was "
                                  "canceled.")


def test_relevance_keeps_between_3_and_keep_elements():
    elements = axtree_elements(ORDER_PAGE, VISIBILITY)
    intent = "How many orders has Grace Nguyen placed? Search the orders."
    kept = relevant_elements(elements, intent, keep=4)
    # overlap first (paragraph: grace, nguyen, placed, orders; heading: orders; search box and
    # button: search), then interactive roles; printed in page order
    assert [e.bid for e in kept] == ["106", "107", "108", "109"]
    assert len(relevant_elements(elements, intent)) == 9  # all of them fit in the default 10
    plain = [e for e in elements if e.role in ("heading", "paragraph")]
    assert [e.bid for e in relevant_elements(plain, "zzz", min_keep=3)] == ["106", "109"]
    many = [e for e in axtree_elements({"nodes": [node(0, "RootWebArea", "x", range(1, 31))] + [
        node(i, "heading", f"Section {i}", [], bid=i) for i in range(1, 31)]})]
    assert [e.bid for e in relevant_elements(many, "nothing in common")] == ["1", "2", "3"]
    assert len(relevant_elements(many, "section", keep=10)) == 10


def test_render_web_state():
    text = render_web_state(ORDER_PAGE, "search orders of Grace", url="http://wa/admin/sales",
                            extra_properties=VISIBILITY, keep=3, feedback="clicked\n  Search")
    assert text.splitlines() == ["Feedback: clicked Search", "URL: http://wa/admin/sales",
                                 "[107] textbox: Search by keyword (value: shoes)",
                                 "[108] button: Search",
                                 "[109] paragraph: Grace Nguyen placed 3 orders; the latest was "
                                 "canceled."]


@pytest.mark.parametrize("ours, theirs", [
    ("click [12]", 'click("12")'),
    ('type [7] "running shoes"', 'fill("7", "running shoes")'),
    ("type [7] [running shoes] [1]", 'fill("7", "running shoes")'),
    ('type [7] "say \\"hi\\""', 'fill("7", "say \\"hi\\"")'),
    ("hover [3]", 'hover("3")'),
    ('select [9] "Canceled"', 'select_option("9", "Canceled")'),
    ("press [Control+a]", 'keyboard_press("Control+a")'),
    ("scroll [down]", "scroll(0, 500)"),
    ("scroll [up]", "scroll(0, -500)"),
    ('goto "http://wa:7770/sales"', 'goto("http://wa:7770/sales")'),
    ("go_back", "go_back()"),
    ("tab_focus [1]", "tab_focus(1)"),
    ("close_tab", "tab_close()"),
    ('stop "3"', 'send_msg_to_user("3")'),
    ("stop [N/A]", 'send_msg_to_user("N/A")'),
])
def test_action_translation(ours, theirs):
    assert translate_action(ours) == theirs


@pytest.mark.parametrize("bad", ["", "click", "jump [3]", "scroll [left]", "tab_focus [x]",
                                 "click 12", 'type [7]'])
def test_untranslatable_actions(bad):
    with pytest.raises(ActionError):
        translate_action(bad)


def test_missing_webarena_urls_fail_before_any_work(monkeypatch, run_cli, tmp_path):
    for var in WA_VARS:
        monkeypatch.setenv(var, f"http://wa.example/{var.lower()}")
    monkeypatch.delenv("WA_MAP")
    with pytest.raises(InputError, match="WA_MAP"):
        make_env("webarena")
    with pytest.raises(InputError, match="WA_MAP"):
        make_tasks([1, 2])
    from dreamgym_cli.trajectories import write_tasks

    write_tasks(tmp_path / "W.jsonl", [Task(task_id="webarena_lite/1", env="webarena",
                                            instruction="i", spec={"task_id": 1})])
    code, _, err = run_cli("collect", "--tasks", tmp_path / "W.jsonl", "--policy", "random",
                           "--out", tmp_path / "E.jsonl")
    assert code == 2 and "WA_MAP" in err and not (tmp_path / "E.jsonl").exists()
    monkeypatch.setenv("WA_MAP", "http://wa.example/map")
    tasks = make_tasks([1, 2], split="test")
    assert [t.spec["task_id"] for t in tasks] == [1, 2] and tasks[0].env == "webarena"


# ---- the env loop in a real browser -------------------------------------------------------

needs_browser = pytest.mark.skipif(
    importlib.util.find_spec("browsergym") is None or shutil.which("chromium") is None,
    reason="needs browsergym-core (the `browser` extra) and Debian's chromium")

PAGE = """<html><head><title>Orders</title></head><body>
<h1>Orders</h1>
<a href="history.html">Order history</a>
<input type="text" aria-label="Search orders">
<button onclick="document.getElementById('out').textContent =
  'Found 3 orders for ' + document.querySelector('input').value">Search</button>
<p id="out"></p>
</body></html>"""
HISTORY = "<html><head><title>History</title></head><body><h1>Order history</h1></body></html>"


@pytest.mark.slow
@needs_browser
def test_browsergym_loop_on_local_pages(tmp_path):
    from browsergym.core.task import OpenEndedTask

    from dreamgym_cli.envs.webarena import BrowserGymEnv

    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "history.html").write_text(HISTORY)
    url = (tmp_path / "index.html").as_uri()
    env = BrowserGymEnv(lambda task: (OpenEndedTask, {"start_url": task.spec["url"],
                                                      "goal": task.instruction}), max_steps=6)
    task = Task(task_id="local/orders", env="browsergym", instruction="Search orders for shoes",
                spec={"url": url})
    try:
        first = env.reset(task)
        lines = first.text.splitlines()
        assert lines[0] == f"URL: {url}"
        bids = {line.split("] ", 1)[1]: line[1:].split("]")[0] for line in lines[1:]}
        assert {"textbox: Search orders", "button: Search", "link: Order history"} <= set(bids)
        typed = env.step(f'type [{bids["textbox: Search orders"]}] "shoes"')
        assert "(value: shoes)" in typed.observation.text and not typed.done
        assert typed.info["browsergym_action"].startswith("fill(")
        clicked = env.step(f'click [{bids["button: Search"]}]')
        assert "paragraph: Found 3 orders for shoes" in clicked.observation.text
        bad = env.step("jump [1]")  # not an action: the page stays, the step is spent
        assert bad.observation.text.startswith("Feedback: unknown action 'jump'")
        assert "Found 3 orders for shoes" in bad.observation.text
        missing = env.step("click [99999]")  # BrowserGym reports the error
        assert missing.observation.text.startswith("Feedback: ") and not missing.done
        moved = env.step(f'click [{bids["link: Order history"]}]')
        assert moved.observation.info["url"].endswith("history.html")
        assert "heading: Order history" in moved.observation.text
        last = env.step("go_back")  # the 6th step: the limit
        assert last.done and last.success is False and last.info["truncated"]
        assert last.observation.info["url"] == url
    finally:
        env.close()
