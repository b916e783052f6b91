"""ALFWorld games authored by dreamgym, generated into ALFWorld's own layout and `.tw-pddl` format.

The ALFWorld dataset (json_2.1.1) is user data that cannot be downloaded here, so the project
authors a small set of games itself: `RECIPES` below names, per game, the task type, the scene and
the target objects; `ensure_builtin_games()` turns them into `json_2.1.1/<split>/<task>/<trial>/`
directories holding `game.tw-pddl` (JSON: `pddl_domain`, `grammar`, `pddl_problem`, `solvable`)
and `traj_data.json` (`task_type`, `pddl_params`, `turk_annotations`), exactly what ALFWorld's
`AlfredTWEnv` collects and plays. Everything ALFWorld-specific is read at generation time from the
installed `alfworld` wheel, never copied into this repository:

- the PDDL domain and TextWorld grammar: `alfworld/data/alfred.pddl`, `alfred.twl2`;
- the scene: `alfworld/gen/layouts/FloorPlan<N>-openable.json` (every receptacle of the AI2-THOR
  scene with the pose the agent stands at to use it) and `FloorPlan<N>-objects.json`;
- the goal of each task type and its task-description templates: `alfworld.gen.goal_library`;
- which object fits which receptacle, and which can be heated, cooled, cleaned or switched on:
  `alfworld.gen.constants` (`VAL_RECEPTACLE_OBJECTS`, `VAL_ACTION_OBJECTS`).

Small objects are placed by a seeded RNG in receptacles that can hold them (never already in the
goal receptacle), with ids in ALFRED's `Type|x|y|z` form. The games are generated once per
generator version and alfworld version into `$DREAMGYM_HOME/games/alfworld/<key>/` (written to a
temporary sibling, then renamed), which is what `tasks make --env alfworld` uses when the user
gives no ALFWorld data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

from dreamgym_cli.errors import InputError

GENERATOR_VERSION = 1
# Our splits' names are train/valid/test; ALFWorld's directories (see envs.alfworld.SPLITS).
TASK_TYPES = ("pick_and_place_simple", "look_at_obj_in_light", "pick_clean_then_place_in_recep",
              "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep",
              "pick_two_obj_and_place")
# Constants the domain's actions name (SinkBasinType in CleanObject, ...): always declared.
DOMAIN_RTYPES = ("SinkBasin", "Microwave", "Fridge")
DOMAIN_OTYPES = ("Knife", "ButterKnife")
DISTRACTORS = 4
# A lamp is no object one puts anywhere (ALFWorld's receptacle table omits it): it stands on these.
LAMP_STANDS = ("Desk", "SideTable", "Dresser")  # extra small objects per game besides the targets


@dataclasses.dataclass(frozen=True)
class GameRecipe:
    """One authored game: ALFWorld split dir, task type, AI2-THOR scene and targets."""

    split: str  # train, valid_seen or valid_unseen (ALFWorld's directory names)
    task_type: str  # one of TASK_TYPES
    scene: int  # AI2-THOR FloorPlan number (1-30 kitchens, 301-330 bedrooms)
    obj: str  # the object to move (pddl_params.object_target)
    recep: str = ""  # the receptacle type to put it in (parent_target); '' for look_at_obj
    toggle: str = ""  # the lamp to switch on (toggle_target), look_at_obj_in_light only
    seed: int = 0  # placement RNG seed and task-description template choice

    @property
    def task_dir(self) -> str:
        last = self.toggle if self.task_type == "look_at_obj_in_light" else self.recep
        return f"{self.task_type}-{self.obj}-None-{last}-{self.scene}"

    @property
    def trial_dir(self) -> str:
        return f"trial_dreamgym_{self.seed:03d}"


# Two training games per task type, one valid_seen game (a training scene) and one valid_unseen
# game (a scene no training game uses): 24 games.
RECIPES: tuple[GameRecipe, ...] = (
    GameRecipe("train", "pick_and_place_simple", 1, "Apple", "Fridge", seed=1),
    GameRecipe("train", "pick_and_place_simple", 301, "CellPhone", "Bed", seed=2),
    GameRecipe("valid_seen", "pick_and_place_simple", 2, "Mug", "CounterTop", seed=3),
    GameRecipe("valid_unseen", "pick_and_place_simple", 10, "Cup", "Shelf", seed=4),
    GameRecipe("train", "look_at_obj_in_light", 301, "Book", toggle="DeskLamp", seed=1),
    GameRecipe("train", "look_at_obj_in_light", 303, "CD", toggle="DeskLamp", seed=2),
    GameRecipe("valid_seen", "look_at_obj_in_light", 303, "Pencil", toggle="DeskLamp", seed=3),
    GameRecipe("valid_unseen", "look_at_obj_in_light", 308, "KeyChain", toggle="DeskLamp",
               seed=4),
    GameRecipe("train", "pick_clean_then_place_in_recep", 1, "Mug", "Shelf", seed=1),
    GameRecipe("train", "pick_clean_then_place_in_recep", 5, "Plate", "CounterTop", seed=2),
    GameRecipe("valid_seen", "pick_clean_then_place_in_recep", 2, "Bowl", "Fridge", seed=3),
    GameRecipe("valid_unseen", "pick_clean_then_place_in_recep", 15, "Tomato", "DiningTable",
               seed=4),
    GameRecipe("train", "pick_heat_then_place_in_recep", 1, "Potato", "CounterTop", seed=1),
    GameRecipe("train", "pick_heat_then_place_in_recep", 2, "Egg", "Fridge", seed=2),
    GameRecipe("valid_seen", "pick_heat_then_place_in_recep", 5, "Cup", "Cabinet", seed=3),
    GameRecipe("valid_unseen", "pick_heat_then_place_in_recep", 10, "Apple", "GarbageCan",
               seed=4),
    GameRecipe("train", "pick_cool_then_place_in_recep", 2, "Tomato", "Microwave", seed=1),
    GameRecipe("train", "pick_cool_then_place_in_recep", 5, "Apple", "CounterTop", seed=2),
    GameRecipe("valid_seen", "pick_cool_then_place_in_recep", 1, "Potato", "Microwave", seed=3),
    GameRecipe("valid_unseen", "pick_cool_then_place_in_recep", 15, "Bowl", "Cabinet", seed=4),
    GameRecipe("train", "pick_two_obj_and_place", 301, "Pencil", "Desk", seed=1),
    GameRecipe("train", "pick_two_obj_and_place", 2, "Egg", "CounterTop", seed=2),
    GameRecipe("valid_seen", "pick_two_obj_and_place", 303, "KeyChain", "Dresser", seed=3),
    GameRecipe("valid_unseen", "pick_two_obj_and_place", 308, "CD", "Shelf", seed=4),
)


def alfworld_files() -> dict[str, Path]:
    """Paths of the installed alfworld wheel's domain, grammar and scene layouts."""
    try:
        import alfworld
    except ImportError:
        raise InputError("ALFWorld games need the alfworld package: pip install -e '.[alfworld]' "
                         "(make test installs it)", field="env") from None
    root = Path(alfworld.__file__).parent
    return {"domain": root / "data" / "alfred.pddl", "grammar": root / "data" / "alfred.twl2",
            "layouts": root / "gen" / "layouts"}


def builtin_key() -> str:
    """Names the generated set: changes with the generator, the recipes and alfworld's files."""
    from importlib.metadata import version

    files = alfworld_files()
    digest = hashlib.sha256(repr((GENERATOR_VERSION, RECIPES)).encode())
    for name in ("domain", "grammar"):
        digest.update(files[name].read_bytes())
    return f"dreamgym-v{GENERATOR_VERSION}-alfworld{version('alfworld')}-" \
           f"{digest.hexdigest()[:10]}"


def builtin_root(games_dir: Path | None = None) -> Path:
    from dreamgym_cli.envs.textworld_games import default_data_dir

    return Path(games_dir or default_data_dir()) / "alfworld" / builtin_key()


def ensure_builtin_games(games_dir: Path | None = None) -> Path:
    """The directory holding json_2.1.1/ with every recipe's game; generated when missing."""
    root = builtin_root(games_dir)
    if (root / "json_2.1.1").is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for recipe in RECIPES:
            write_game(tmp, recipe)
        try:
            os.rename(tmp, root)
        except OSError:  # another process published the same set first: theirs is identical
            if not (root / "json_2.1.1").is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def write_game(root: Path, recipe: GameRecipe) -> Path:
    """Write one recipe's game.tw-pddl and traj_data.json under `root`; the game file's path."""
    files = alfworld_files()
    game_dir = root / "json_2.1.1" / recipe.split / recipe.task_dir / recipe.trial_dir
    game_dir.mkdir(parents=True, exist_ok=True)
    desc = task_description(recipe)
    grammar = files["grammar"].read_text().replace("UNKNOWN GOAL", desc)
    game = {"pddl_domain": files["domain"].read_text(), "grammar": grammar,
            "pddl_problem": pddl_problem(recipe, files["layouts"]), "solvable": True}
    (game_dir / "game.tw-pddl").write_text(json.dumps(game))
    traj = {"task_type": recipe.task_type, "scene": {"floor_plan": f"FloorPlan{recipe.scene}"},
            "pddl_params": {"object_target": recipe.obj, "parent_target": recipe.recep,
                            "toggle_target": recipe.toggle, "mrecep_target": "",
                            "object_sliced": False},
            "turk_annotations": {"anns": [{"task_desc": desc[0].upper() + desc[1:] + ".",
                                           "high_descs": []}]},
            "dreamgym": {"generator_version": GENERATOR_VERSION, "seed": recipe.seed}}
    (game_dir / "traj_data.json").write_text(json.dumps(traj, indent=1))
    return game_dir / "game.tw-pddl"


def task_description(recipe: GameRecipe) -> str:
    """One of ALFWorld's templates for the task type, filled the way ALFWorld fills them."""
    from alfworld.gen.goal_library import gdict

    templates = gdict[recipe.task_type]["templates"]
    return templates[recipe.seed % len(templates)].format(
        obj=recipe.obj.lower(), recep=recipe.recep.lower(), toggle=recipe.toggle.lower(),
        mrecep="")


# ----------------------------------------------------------------------------------------------
# The PDDL problem


def mangle(name: str) -> str:
    """ALFRED ids as PDDL names: `Mug|+00.68|-01.20|+00.50` -> `Mug_bar__plus_00_dot_68_...`."""
    for char, word in (("-", "_minus_"), ("|", "_bar_"), ("+", "_plus_"), (".", "_dot_"),
                       (",", "_comma_")):
        name = name.replace(char, word)
    return name


def receptacle_type(receptacle_id: str) -> str:
    parts = receptacle_id.split("|")
    return parts[4] if len(parts) > 4 else parts[0]  # `Sink|x|y|z|SinkBasin` is a SinkBasin


def location_name(pose: list[float]) -> str:
    """A layout pose (metres, metres, degrees, horizon) as ALFRED's grid location name."""
    x, z, rotation, horizon = pose
    return f"loc|{round(x / 0.25)}|{round(z / 0.25)}|{int(rotation) // 90}|{int(horizon)}"


def _scene(layouts: Path, scene: int) -> tuple[dict[str, str], list[str]]:
    """Receptacle id -> location name, and the object types the scene has."""
    from alfworld.gen import constants

    poses = json.loads((layouts / f"FloorPlan{scene}-openable.json").read_text())
    receptacles = {rid: location_name(pose) for rid, pose in sorted(poses.items())
                   if receptacle_type(rid) in constants.VAL_RECEPTACLE_OBJECTS}
    objects = json.loads((layouts / f"FloorPlan{scene}-objects.json").read_text())
    return receptacles, objects


def _place(recipe: GameRecipe, receptacles: dict[str, str], scene_objects: list[str],
           rng: random.Random) -> list[tuple[str, str, str]]:
    """(object id, object type, receptacle id) for the targets and a few distractors."""
    from alfworld.gen import constants

    fits = constants.VAL_RECEPTACLE_OBJECTS
    wanted = [recipe.obj] * (2 if recipe.task_type == "pick_two_obj_and_place" else 1)
    if recipe.toggle:
        wanted.append(recipe.toggle)
    others = sorted({o for o in scene_objects if o not in wanted and o not in fits
                     and o in constants.OBJECTS and any(o in fits[receptacle_type(r)]
                                                         for r in receptacles)})
    wanted += rng.sample(others, min(DISTRACTORS, len(others)))
    placed = []
    for index, otype in enumerate(wanted):
        homes = [r for r in receptacles if receptacle_type(r) != recipe.recep and (
            receptacle_type(r) in LAMP_STANDS if otype == recipe.toggle
            else otype in fits[receptacle_type(r)])]
        if not homes:
            raise ValueError(f"{recipe}: no receptacle in FloorPlan{recipe.scene} holds {otype}")
        home = rng.choice(homes)
        x, y, z = (float(v) for v in home.split("|")[1:4])
        offset = 0.05 * (index + 1)
        placed.append((f"{otype}|{x + offset:+06.2f}|{y + 0.02:+06.2f}|{z - offset:+06.2f}",
                       otype, home))
    return placed


def _goal(recipe: GameRecipe) -> str:
    """ALFWorld's goal for the task type (its `#` stands for PDDL's `-`), ending the problem."""
    from alfworld.gen.goal_library import gdict

    text = gdict[recipe.task_type]["pddl"].format(obj=recipe.obj, recep=recipe.recep,
                                                  toggle=recipe.toggle, mrecep="")
    return text.replace("#", "-")


def pddl_problem(recipe: GameRecipe, layouts: Path) -> str:
    from alfworld.gen import constants

    if recipe.task_type not in TASK_TYPES:
        raise ValueError(f"unknown ALFWorld task type {recipe.task_type!r}")
    rng = random.Random(f"{recipe.task_dir}/{recipe.seed}")
    receptacles, scene_objects = _scene(layouts, recipe.scene)
    missing = {recipe.recep, recipe.toggle} - {"", *map(receptacle_type, receptacles),
                                               *scene_objects}
    if missing:
        raise ValueError(f"{recipe}: FloorPlan{recipe.scene} has no {sorted(missing)}")
    placed = _place(recipe, receptacles, scene_objects, rng)
    rtypes = sorted({*map(receptacle_type, receptacles), *DOMAIN_RTYPES})
    otypes = sorted({otype for _, otype, _ in placed} | set(DOMAIN_OTYPES))
    start = "loc|0|0|0|30"
    while start in receptacles.values():  # the agent starts in the middle of the room
        start = start.replace("loc|0", "loc|1", 1) if start.startswith("loc|0") else "loc|2|2|0|30"
    locations = sorted({*receptacles.values(), start})
    actions = constants.VAL_ACTION_OBJECTS

    # `#` separates a name from its type until the names are mangled (their `-` is `_minus_`)
    declared = ["agent1 # agent"]
    declared += [f"{t}Type # otype" for t in otypes] + [f"{t}Type # rtype" for t in rtypes]
    declared += [f"{oid} # object" for oid, _, _ in placed]
    declared += [f"{rid} # receptacle" for rid in receptacles]
    declared += [f"{loc} # location" for loc in locations]

    facts = [f"(atLocation agent1 {start})"]
    for rid, loc in receptacles.items():
        rtype = receptacle_type(rid)
        facts += [f"(receptacleType {rid} {rtype}Type)", f"(receptacleAtLocation {rid} {loc})"]
        if rtype in constants.OPENABLE_CLASS_SET:
            facts.append(f"(openable {rid})")
    for rtype in sorted(set(map(receptacle_type, receptacles))):
        facts += [f"(canContain {rtype}Type {o}Type)" for o in otypes
                  if o in constants.VAL_RECEPTACLE_OBJECTS.get(rtype, ())]
    for oid, otype, home in placed:
        facts += [f"(objectType {oid} {otype}Type)", f"(inReceptacle {oid} {home})",
                  f"(objectAtLocation {oid} {receptacles[home]})"]
        if otype != recipe.toggle:
            facts.append(f"(pickupable {oid})")
        for predicate, group in (("cleanable", "Cleanable"), ("heatable", "Heatable"),
                                 ("coolable", "Coolable"), ("toggleable", "Toggleable"),
                                 ("sliceable", "Sliceable")):
            if otype in actions[group]:
                facts.append(f"({predicate} {oid})")
        if otype in constants.MOVABLE_RECEPTACLES_SET:
            facts.append(f"(isReceptacleObject {oid})")

    body = "\n        ".join(declared)
    init = "\n        ".join(facts)
    problem = (f"(define (problem dreamgym_{recipe.seed})\n"
               f"    (:domain alfred)\n    (:objects\n        {body}\n    )\n"
               f"    (:init\n        {init}\n    )\n")
    return mangle(problem).replace("#", "-") + _goal(recipe)
