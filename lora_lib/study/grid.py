"""A grid file: the runs of a study, expanded and checked before any of them starts.

The grid file::

    root: ../..                   # where the runs start, relative to this file (default: its folder)
    output_dir: executed          # relative to root
    seeds: [0, 1, 2]
    defaults: {epochs: 2, batch_size: 32}   # run parameters (RunConfig.parameters()) shared by every run
    budget_hours: 12.0            # optional: the hours the file counted before its first run
    runs:
      - {method: full, lr: 5.0e-5}
      - {method: lora, rank: [1, 2, 4, 8], lr: 1.0e-3}   # a list expands into one run each

Run ids are the method, ``_r<rank>`` wherever a rank is given, ``_<key><value>`` for any
other key given as a list, and ``_s<seed>``: ``lora_r8_s0``. An entry may set ``name`` to use instead
of the method in its ids, and ``seeds`` to run other seeds than the file's.

Every run is checked when the file is read: as a ``RunConfig``, and by applying its method and
hyperparameters to its model's skeleton (``lora_lib.models.model_skeleton``: the real shapes on
the meta device, no weights), so that ``rank: 0`` or ``targets: quary`` fails at once, naming
the run and the field, rather than hours into a sweep.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from lora_lib.models import model_skeleton
from lora_lib.registry import apply_method

from .config import RunConfig

NOTEBOOK = Path("book") / "train.ipynb"  # relative to the grid's root, unless the grid names one
GRID_KEYS = {"root", "output_dir", "seeds", "defaults", "runs", "notebook", "budget_hours"}
ID_PREFIX = {"rank": "r"}


class GridError(ValueError):
    """An experiments file that cannot be expanded into runs."""


@dataclass(frozen=True)
class Run:
    run_id: str
    parameters: dict


@dataclass(frozen=True)
class Grid:
    runs: list[Run]
    output_dir: Path
    notebook: Path
    root: Path  # where the kernels run: output_dir, notebook and the runs' relative paths start there
    budget_hours: float | None = None  # what the file counted its runs would take, before the first ran


def expand(path: str | Path) -> Grid:
    """Read an experiments file, expand it into runs with stable, unique ids and check every run."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"no experiments file at {path}")
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or "runs" not in spec:
        raise GridError(f"{path}: expected a mapping with a 'runs' list (see lora_lib.study.grid's docstring)")
    unknown = sorted(set(spec) - GRID_KEYS)
    if unknown:
        raise GridError(f"{path}: unknown key(s) {', '.join(unknown)}; the grid takes {', '.join(sorted(GRID_KEYS))}")
    runs = _expand_runs(path, spec)
    root = (path.resolve().parent / spec.get("root", ".")).resolve()
    if not root.is_dir():
        raise GridError(f"{path}: its root {spec['root']!r} is not a folder (it is relative to the grid file)")
    notebook = root / spec.get("notebook", NOTEBOOK)
    if not notebook.is_file():
        raise GridError(
            f"{path}: the training notebook {notebook} does not exist; set 'notebook' in the grid file "
            "to its path (relative to the grid's root), or run jupytext --sync book/train.md"
        )
    check_runs(path, runs)
    budget = spec.get("budget_hours")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0
    ):
        raise GridError(f"{path}: budget_hours must be a positive number of hours, got {budget!r}")
    return Grid(
        runs=runs,
        output_dir=root / spec.get("output_dir", "executed"),
        notebook=notebook,
        root=root,
        budget_hours=None if budget is None else float(budget),
    )


def _expand_runs(path: Path, spec: dict) -> list[Run]:
    seeds = spec.get("seeds", [0])
    defaults = spec.get("defaults") or {}
    runs: dict[str, Run] = {}
    for number, entry in enumerate(spec["runs"], start=1):
        if not isinstance(entry, dict) or "method" not in entry:
            raise GridError(f"{path}: run entry {number} needs a 'method', got {entry!r}")
        entry = dict(entry)
        name = entry.pop("name", entry["method"])
        entry_seeds = entry.pop("seeds", seeds)
        if not isinstance(entry_seeds, list) or not all(isinstance(s, int) for s in entry_seeds):
            raise GridError(f"{path}: run entry {number}'s seeds must be a list of integers, got {entry_seeds!r}")
        varying = [k for k, v in entry.items() if isinstance(v, list)]
        for values in itertools.product(*(entry[k] for k in varying)):
            chosen = dict(zip(varying, values))
            named = {k: v for k, v in {**entry, **chosen}.items() if k in ID_PREFIX or k in chosen}
            suffix = "".join(f"_{ID_PREFIX.get(k, k)}{v}" for k, v in named.items())
            for seed in entry_seeds:
                run_id = f"{name}{suffix}_s{seed}"
                if run_id in runs:
                    raise GridError(f"{path}: run id {run_id} comes out twice; give one of the entries a 'name'")
                runs[run_id] = Run(run_id, {**defaults, **entry, **chosen, "seed": seed, "run_id": run_id})
    return list(runs.values())


def check_runs(path: Path, runs: list[Run]) -> None:
    """Check every run as a ``RunConfig`` and by applying its method to its model's skeleton;
    a ``GridError`` names the first run that fails and what is wrong with it."""
    skeletons: dict[tuple, object] = {}
    applied: set[str] = set()
    for run in runs:
        try:
            config = RunConfig.from_parameters(**run.parameters)
        except (TypeError, ValueError) as err:
            raise GridError(f"{path}: run {run.run_id}: {err}") from err
        key = json.dumps([config.model_name, config.head, config.method, config.hparams], sort_keys=True)
        if key in applied:
            continue
        try:
            if (config.model_name, config.head) not in skeletons:
                skeletons[config.model_name, config.head] = model_skeleton(config.model_name, head=config.head)
            apply_method(copy.deepcopy(skeletons[config.model_name, config.head]), config.method, **config.hparams)
        except (TypeError, ValueError, OSError) as err:
            raise GridError(f"{path}: run {run.run_id}: {err}") from err
        applied.add(key)
