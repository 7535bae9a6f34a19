"""``cycleseg confirm``: a search's winners re-run on fresh seeds, each beside its baseline ``partial``.

A winner is chosen on the seeds of its search, so the gain it shows on them is biased upward (the
winner's curse: among configurations that differ by noise, the luckiest wins). Re-run on seeds the
search never used, paired with ``partial`` at the same dataset, labeled fraction and budget, its gain
is measured without that bias.

Each grid cell's winner is the one ``best-config`` picks (``export.cell_winners``, on val), among the
semi-supervised configurations: ``partial`` and an all-labeled method (``full``) are the baselines, never
candidates. Per cell the arms are

- ``winner@<cell>``: the winner's configuration;
- ``partial@<cell>``: ``method: partial`` on the winner's data, networks and budget. Of the fields the cell
  chose (a search's searched fields; for a grid sweep, the fields that varied among the cell's candidates),
  the method's own settings (its λ's and GAN levers, ``derive.METHOD_PARAMS``) and the optimiser's
  (``derive.OPTIM_FIELDS``) are the cell's (so at their defaults where the cell does not set them), and
  every other one (epochs, batch size, network width, …) the winner's: both run the same optimizer steps
  on the same G_IS. Fields only the semi-supervised method reads are left at their defaults, so cells whose
  baselines coincide share one;
- with ``with_default``, ``default@<cell>``: the winner with the method's and the optimiser's chosen fields
  at the cell's values (e.g. the paper's λ's), unless that is the winner itself.

They become an ordinary search space (``confirm.yaml``: ``variants`` one per arm, ``seeds`` the fresh seeds,
the fields all arms share as ``base``) in the new sweep's folder, run by ``runner.run_sweep`` like any
sweep, beside ``confirm.json``, the provenance (``provenance``) that ``cycleseg report`` cites.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ...model.config import DEFAULTS, EXECUTION_FIELDS, check_value
from ...model.data import cache_key
from ...model.errors import UserError
from ...model.io import check_name
from ...model.methods import METHODS
from ...model.plugins import load_plugins
from ...model.resolve import parse_set, resolve_config
from .. import storage as store
from ..planning.dry_run import varying_fields
from ..planning.plan import PLAN_FILE, Plan, read_plan
from ..planning.spec import cell_key, configuration_key
from ..report.derive import BASELINE, METHOD_PARAMS, OPTIM_FIELDS, cell_variant, slug
from ..results import parquet as res
from ..results.export import CONDITIONS, Winner, cell_winners
from .runner import SweepOutcome, locations, run_sweep

SPACE_FILE = "confirm.yaml"  # the generated search space, in the confirmation's sweep folder
PROVENANCE_FILE = "confirm.json"
FORMAT = 1  # confirm.json's schema version
DEFAULT_SEEDS = 5
MIN_SEEDS = 2  # a paired interval needs two pairs
METRIC, MODE = "val_miou", "max"  # how winners are chosen: best-config's default (choose on val)
# arm names (the tables' rows; a variant is named cell_variant(arm, cell)): the winners form one row, the
# baselines the partial row and the defaults the plain cyclegan row, each paired by fraction and seed
WINNER, DEFAULT = "winner", "default"


@dataclass(frozen=True)
class Pairing:
    """One cell's winner and the arms that re-run it: each arm is (variant name, config overrides)."""

    winner: Winner
    searched: dict[str, Any]  # the winner's values of the fields chosen in its cell
    arms: dict[str, dict[str, Any]]  # winner, baseline and (optionally) default: name -> overrides
    baseline: str  # the baseline arm's name (shared by cells whose baselines coincide)
    default: str | None  # the default arm's name; None when not asked for, or when it is the winner
    from_winner: dict[str, Any]  # chosen fields the baseline (and default) keep at the winner's value

    @property
    def name(self) -> str:
        """The winner arm's name (the first arm)."""
        return next(iter(self.arms))


# ----------------------------------------------------------------------------------------------
# Seeds


def used_seeds(trials: pd.DataFrame, plan: Plan | None) -> set[int]:
    """Every seed a trial of the source used or its plan gives (a search runs each suggestion on all of them)."""
    return {int(s) for s in trials["seed"]} | set(plan.seeds if plan is not None else ())


def fresh_seeds(spec: str, used: set[int], source: str) -> list[int]:
    """``--seeds``: a count (the smallest seeds in ``used``'s complement) or explicit seeds, none of them used."""
    text = spec.strip()
    if "," not in text:
        try:
            count = int(text)
        except ValueError:
            raise UserError(f"--seeds '{spec}' is neither a count (e.g. --seeds 5) nor seeds separated by commas "
                            "(e.g. --seeds 100,101,102)") from None
        if count < MIN_SEEDS:
            raise UserError(f"--seeds {count}: a paired interval needs at least {MIN_SEEDS} seeds; give e.g. "
                            f"--seeds {DEFAULT_SEEDS}")
        return list(itertools.islice((s for s in itertools.count() if s not in used), count))
    try:
        seeds = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"--seeds '{spec}': seeds are whole numbers separated by commas, e.g. --seeds 100,101,102") \
            from None
    for s in seeds:
        check_value("seed", s, where="--seeds: ")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds '{spec}' lists a seed twice; list each seed once")
    if len(seeds) < MIN_SEEDS:
        raise UserError(f"--seeds '{spec}': a paired interval needs at least {MIN_SEEDS} seeds; list more")
    clash = sorted(set(seeds) & used)
    if clash:
        free = fresh_seeds(str(len(seeds)), used | set(seeds), source)
        raise UserError(f"--seeds {_ints(clash)}: {'it was' if len(clash) == 1 else 'they were'} used by trials of "
                        f"'{source}' (its seeds: {_ints(used)}), where the winners were chosen, so their gains there "
                        f"are biased upward; give seeds it never used (e.g. --seeds {','.join(map(str, free))}) or "
                        f"a count (--seeds {len(seeds)} takes the smallest unused)")
    return seeds


def _ints(values: Any) -> str:
    return ", ".join(str(v) for v in sorted(values))


# ----------------------------------------------------------------------------------------------
# Winners and their arms


def candidates(trials: pd.DataFrame) -> pd.DataFrame:
    """What may win: completed trials with a value to rank on, of a semi-supervised method (not the baseline,
    not one that trains on every label)."""
    load_plugins()
    done = trials[(trials["status"] == "completed") & trials[METRIC].notna()]
    semi = [m != BASELINE and not METHODS.get(m).all_labeled for m in done["method"]]
    return done[semi]


SELF_FILLING = ("method", "recipe", "preset")  # fields whose value fills others where a layer leaves them unset


def _overrides(cfg: dict[str, Any]) -> dict[str, Any]:
    """A resolved config as the fields a space must give to resolve to it again, without the seed: those that
    differ from what its method, recipe and preset alone resolve to (so ``recipe: paper-code`` with the paper's
    λ4 keeps λ4), and those three where they are not the defaults."""
    own = {k: cfg[k] for k in SELF_FILLING if k in cfg}
    ref = resolve_config(own).to_dict()
    return {**{k: v for k, v in own.items() if v != DEFAULTS[k]},
            **{k: v for k, v in cfg.items() if k != "seed" and k in ref and v != ref[k]}}


def _cell_configuration(cfg: dict[str, Any], searched: tuple[str, ...], plan: Plan | None) -> dict[str, Any]:
    """The overrides of ``cfg``'s cell without the searched fields: a search's plan cell (as the search saw it,
    before it sampled), else the resolved config minus them."""
    if plan is not None and plan.cells and searched:
        key = cell_key(cfg, searched)
        for cell in plan.cells:
            if cell_key(cell["overrides"], searched) == key:
                return {k: v for k, v in cell["overrides"].items() if k not in (*searched, "seed")}
    return {k: v for k, v in _overrides(cfg).items() if k not in searched}


def _chosen_fields(w: Winner, pool: pd.DataFrame, searched: tuple[str, ...]) -> tuple[str, ...]:
    """What the cell chose: a search's searched fields; in a grid sweep, the fields that vary among the cell's
    candidates, but for the method and the dataset and fraction that set the cell apart."""
    if searched:
        return searched
    cfg = json.loads(w.members["config_json"].iloc[0])
    same = [all(c[k] == cfg[k] for k in CONDITIONS) for c in map(json.loads, pool["config_json"])]
    configs = [json.loads(c) for c in pool.loc[same, "config_json"]]
    return tuple(k for k in varying_fields(configs) if k not in ("seed", "method", *CONDITIONS))


def _budget(overrides: dict[str, Any]) -> tuple[Any, ...]:
    """What fixes a trial's optimizer steps (``trainer.epoch_steps``): its decoded data, fraction, batch, epochs."""
    cfg = resolve_config(overrides)
    return cache_key(cfg), cfg.labeled_fraction, cfg.batch_size, cfg.epochs


def pair_winners(trials: pd.DataFrame, plan: Plan | None, *, with_default: bool = False) -> list[Pairing]:
    """Each cell's winner (chosen on val as best-config does) with its baseline and, optionally, its default."""
    pool = candidates(trials)
    if pool.empty:
        methods = ", ".join(sorted(trials["method"].unique()))
        raise UserError(f"no completed semi-supervised trial to confirm (methods there: {methods}); confirm "
                        "re-runs the winners of a search or grid sweep over cyclegan or hung against partial")
    searched = tuple(plan.searched) if plan is not None else ()
    winners = cell_winners(pool, METRIC, MODE, searched)
    names: set[str] = set()
    baselines: dict[str, str] = {}  # config key -> its arm's name: cells whose baselines coincide share one
    out = []
    for w in winners:
        cfg = json.loads(w.members["config_json"].iloc[0])
        chosen = _chosen_fields(w, pool, searched)
        cell = _cell_configuration(cfg, chosen, plan)
        semi_only = set(METHOD_PARAMS.get(cfg["method"], ()))  # partial reads none of them: at their defaults
        kept = {k: cfg[k] for k in chosen if k not in semi_only | set(OPTIM_FIELDS)}  # data, networks, budget
        winner = {**cell, **{k: cfg[k] for k in chosen}}
        if configuration_key(winner) != configuration_key(cfg):
            raise UserError(f"the winner of cell {w.cell} cannot be rebuilt from its sweep's plan ({PLAN_FILE} and "
                            "trials/ disagree); export it with best-config and run it as a sweep's base: instead")
        tag = _unique(slug(w.cell) if len(winners) > 1 else slug(cfg["dataset"], cfg["labeled_fraction"]), names)
        arms = {cell_variant(WINNER, tag): winner}
        baseline = {**{k: v for k, v in cell.items() if k not in semi_only}, **kept, "method": BASELINE}
        if _budget(baseline) != _budget(winner):  # equal budgets, by construction
            raise UserError(f"cell {w.cell}: its baseline would not run the winner's optimizer steps; report this")
        base_name = baselines.setdefault(configuration_key(baseline), cell_variant(BASELINE, tag))
        if base_name == cell_variant(BASELINE, tag):
            arms[base_name] = baseline
        default_name = None
        default = {**cell, **kept}
        if with_default and configuration_key(default) != configuration_key(winner):
            default_name = cell_variant(DEFAULT, tag)
            arms[default_name] = default
        out.append(Pairing(w, {k: cfg[k] for k in chosen}, arms, base_name, default_name, kept))
    return out


def _unique(tag: str, taken: set[str]) -> str:
    """``tag``, or ``tag-2``, ``tag-3``… when another cell's slug came out the same."""
    out = next(t for t in itertools.chain([tag], (f"{tag}-{i}" for i in itertools.count(2))) if t not in taken)
    taken.add(out)
    return out


# ----------------------------------------------------------------------------------------------
# The generated space and the provenance


def space_mapping(pairings: list[Pairing], seeds: list[int], description: str) -> dict[str, Any]:
    """The search space of the arms: what every arm shares as ``base``, the rest per variant, the fresh seeds."""
    arms = {name: ov for p in pairings for name, ov in p.arms.items()}
    first = next(iter(arms.values()))
    shared = {k: v for k, v in first.items()
              if all(k in ov and json.dumps(ov[k]) == json.dumps(v) for ov in arms.values())}
    return {"description": description, "base": shared, "seeds": list(seeds),
            "variants": {name: {k: v for k, v in ov.items() if k not in shared} for name, ov in arms.items()}}


def provenance(source: str, source_sweep: str, pairings: list[Pairing], seeds: list[int]) -> dict[str, Any]:
    """confirm.json: where the winners came from, what they were chosen on, and the seeds they are re-run on.

    ``{format, created_at, source (the sweep folder as given), source_sweep (its name), metric, mode,
    fresh_seeds, space (the generated space file), cells: [{cell, winner, baseline, default (arm names; default
    null without one), group_hash, trial_ids, search_seeds, searched ({field: winner's value}), baseline_from_winner
    ({chosen field the baseline keeps at the winner's value: value}), value, std, n (the winner's metric over its
    search seeds), caveats}]}``
    """
    return {
        "format": FORMAT,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source, "source_sweep": source_sweep, "metric": METRIC, "mode": MODE,
        "fresh_seeds": list(seeds), "space": SPACE_FILE,
        "cells": [{
            "cell": p.winner.cell, "winner": p.name, "baseline": p.baseline, "default": p.default,
            "group_hash": str(p.winner.members["group_hash"].iloc[0]),
            "trial_ids": [str(t) for t in p.winner.members["trial_id"]],
            "search_seeds": sorted(int(s) for s in p.winner.members["seed"]),
            "searched": p.searched, "baseline_from_winner": p.from_winner,
            "value": float(p.winner.stats["mean"]), "std": float(p.winner.stats["std"]),
            "n": int(p.winner.stats["n"]), "caveats": list(p.winner.caveats),
        } for p in pairings],
    }


def read_provenance(sweep_dir: str | Path) -> dict[str, Any] | None:
    """A confirmation's confirm.json (None in any other sweep); a damaged one is a ``UserError``."""
    path = store.join(str(sweep_dir), PROVENANCE_FILE)
    data = store.read_bytes(path)
    if data is None:
        return None
    try:
        info = json.loads(data.decode())
        if not isinstance(info, dict) or not isinstance(info.get("cells"), list):
            raise ValueError
        return info
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"'{path}' is damaged (not the JSON cycleseg confirm writes); restore it from a copy, or "
                        "delete it (the sweep's trials stay readable, without its provenance)") from None


def confirmation_note(sweep_dir: str | Path) -> str | None:
    """The report's line on a confirmation: where its winners were chosen, on which seeds, and its own seeds."""
    info = read_provenance(sweep_dir)
    if info is None:
        return None
    cells = info["cells"]
    search_seeds = sorted({int(s) for c in cells for s in c.get("search_seeds", [])})
    searched = sorted({k for c in cells for k in c.get("searched", {})})
    budget = sorted({k for c in cells for k in c.get("baseline_from_winner", {})})
    return (f"`{sweep_dir}` confirms the winners of sweep '{info.get('source_sweep')}' (`{info.get('source')}`): "
            f"{len(cells)} cell(s), each winner chosen on {info.get('metric')} over that sweep's seeds "
            f"{_ints(search_seeds)}, re-run here on fresh seeds {_ints(info.get('fresh_seeds', []))} and paired "
            f"with partial ({baseline_words(searched, budget)}): gains on these seeds are free of the winner's curse")


# ----------------------------------------------------------------------------------------------
# The command


def confirm_winners(
    source: str | None,
    *,
    seeds: str | None = None,
    with_default: bool = False,
    name: str | None = None,
    storage: str = "runs",
    resume: bool = False,
    dry_run: bool = False,
    sets: tuple[str, ...] | list[str] = (),
    **run_options: Any,
) -> SweepOutcome | None:
    """Re-run ``source``'s winners on fresh seeds beside their baselines as the sweep ``name`` (or, ``resume``,
    finish that confirmation); returns ``run_sweep``'s outcome (None for a dry run). ``sets`` (``--set``) may
    change only where the arms run (``EXECUTION_FIELDS``: e.g. data_root on this cluster), never what they are."""
    what = sorted(set(parse_set(list(sets))) - EXECUTION_FIELDS)
    if what:
        raise UserError(f"confirm --set {', '.join(what)}: the arms are the configurations the search chose; --set "
                        f"may change only where they run ({', '.join(sorted(EXECUTION_FIELDS))})")
    if resume and sets:
        raise UserError("--resume finishes the stored plan, --set included; drop --set")
    run_options["sets"] = list(sets)
    store.check_storage_option(storage)
    if source is not None:
        store.check_reachable(source, "SWEEP")
    if resume:
        return _resume(source, seeds, with_default, name, storage, dry_run, run_options)
    if source is None:
        raise UserError("confirm needs SWEEP: the finished sweep whose winners to re-run, e.g. cycleseg confirm "
                        "runs/lambdas --seeds 5")
    df = res.read_sweeps([source]).trials
    plan = read_plan(source, "restore it from a copy, or delete it (then its cells are each dataset and labeled "
                             "fraction, as for a grid sweep)")
    source_sweep = str(df["sweep"].iloc[0])
    name = check_name(name, "--name") if name is not None else check_name(f"{source_sweep}-confirm",
                                                                           "the default --name (<SWEEP>-confirm)")
    fresh = fresh_seeds(str(seeds or DEFAULT_SEEDS), used_seeds(df, plan), source)
    pairings = pair_winners(df, plan, with_default=with_default)
    root, sweep_dir = locations(storage, name)
    if not dry_run and read_plan(sweep_dir, "choose another --name") is not None:
        raise UserError(f"sweep '{name}' already exists in {root}; finish it with cycleseg confirm --resume --name "
                        f"{name} or choose another --name")
    text = space_text(source, source_sweep, pairings, fresh)
    _describe(pairings, source, fresh)
    if dry_run:
        print(f"the generated space (a real run writes it to {storage.rstrip('/')}/{name}/{SPACE_FILE}):\n{text}")
        with _local_space(text) as path:
            return run_sweep(path, name=name, storage=storage, dry_run=True, **run_options)
    made = _first_missing(sweep_dir)
    space_path = store.join(sweep_dir, SPACE_FILE)
    store.write_bytes(space_path, text.encode())
    store.write_bytes(store.join(sweep_dir, PROVENANCE_FILE),
                      (json.dumps(provenance(source, source_sweep, pairings, fresh), indent=1) + "\n").encode())
    try:
        with _local_space(text, None if store.is_uri(sweep_dir) else space_path) as path:
            outcome = run_sweep(path, name=name, storage=storage, command="confirm", **run_options)
    except BaseException:
        if read_plan(sweep_dir, "choose another --name") is None:  # it never started: leave nothing behind
            _discard(sweep_dir, made)
        raise
    print(f"confirmation: {space_path} (its space; `cycleseg sweep` reruns it under a new --name) and "
          f"{store.join(sweep_dir, PROVENANCE_FILE)} (where the winners came from)")
    return outcome


def space_text(source: str, source_sweep: str, pairings: list[Pairing], seeds: list[int]) -> str:
    """confirm.yaml: a header saying where it came from, then the space (``space_mapping``)."""
    search_seeds = sorted({int(s) for p in pairings for s in p.winner.members["seed"]})
    where = f"sweep '{source_sweep}'" + (f" ({source})" if source != source_sweep else "")
    description = (f"cycleseg confirm: the {METRIC} winners of {where}, chosen over its "
                   f"seeds {_ints(search_seeds)}, re-run on fresh seeds beside partial at the same dataset, labeled "
                   "fraction and budget")
    header = (f"# generated by `cycleseg confirm {source}` "
              f"({datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}); provenance in "
              f"{PROVENANCE_FILE}\n# `cycleseg sweep THIS_FILE --name NEW` runs it again\n")
    return header + yaml.safe_dump(space_mapping(pairings, seeds, description), sort_keys=False)


def _describe(pairings: list[Pairing], source: str, seeds: list[int]) -> None:
    print(f"confirm: {len(pairings)} winner(s) of '{source}' (chosen on {METRIC}), re-run on fresh seeds "
          f"{_ints(seeds)}:")
    for p in pairings:
        values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.searched.items())
        print(f"  {p.winner.cell}: {p.name} ({values + '; ' if values else ''}{METRIC} "
              f"{p.winner.stats['mean']:.4f} over seeds {_ints(p.winner.members['seed'])})")
        print(f"    vs {p.baseline}: {BASELINE}, {baseline_words(p.searched, p.from_winner)}")
        if p.default:
            print(f"    and {p.default}: {p.winner.members['method'].iloc[0]}, "
                  f"{baseline_words(p.searched, p.from_winner)}")
        for c in p.winner.caveats:
            print(f"    caution: {c}")


def baseline_words(searched: Any, from_winner: Any) -> str:
    """How a winner's baseline (and default) differs from it, in words: the method's and optimiser's chosen
    fields at the cell's values, the other chosen fields (data, networks, budget) at the winner's."""
    reset = [k for k in searched if k not in from_winner]
    parts = ([f"{', '.join(reset)} at the cell's {'value' if len(reset) == 1 else 'values'}"] if reset else []) \
        + ([f"the winner's {', '.join(from_winner)} (the same G_IS, data and steps)"] if from_winner else [])
    return ", ".join(parts) or "otherwise the winner's configuration"


def _resume(source: str | None, seeds: str | None, with_default: bool, name: str | None, storage: str,
            dry_run: bool, run_options: dict[str, Any]) -> SweepOutcome | None:
    """Finish a confirmation with its stored space (SWEEP and the options, when given, must give the same)."""
    if not name:
        raise UserError("--resume needs --name: the confirmation to finish (a folder under --storage)")
    root, sweep_dir = locations(storage, check_name(name, "--name"))
    space_path = store.join(sweep_dir, SPACE_FILE)
    raw = store.read_bytes(space_path)
    if raw is None:
        raise UserError(f"--resume: no confirmation '{name}' in {root} (no {SPACE_FILE}); check --name and --storage, "
                        f"or finish a plain sweep with cycleseg sweep --resume --name {name}")
    if source is None and (seeds is not None or with_default):
        raise UserError("--resume without SWEEP finishes the stored plan: drop --seeds / --with-default, or give "
                        "SWEEP too (they are then checked against the stored plan)")
    if source is not None:
        df = res.read_sweeps([source]).trials
        plan = read_plan(source, "restore it from a copy")
        fresh = fresh_seeds(str(seeds or DEFAULT_SEEDS), used_seeds(df, plan), source)
        again = space_mapping(pair_winners(df, plan, with_default=with_default), fresh, "")
        stored = yaml.safe_load(raw.decode())
        if any(again[k] != (stored or {}).get(k) for k in ("base", "seeds", "variants")):
            raise UserError(f"--resume: these arms or seeds differ from the ones confirmation '{name}' started with; "
                            "resume with only --name (its stored plan is used) or start a new --name")
    started = read_plan(sweep_dir, "restore it from a copy")  # its --set, which the space file does not hold
    if started is not None:
        run_options["sets"] = [f"{k}={json.dumps(v)}" for k, v in started.sets.items()]
    with _local_space(raw.decode(), None if store.is_uri(sweep_dir) else space_path) as path:
        return run_sweep(path, name=name, storage=storage, resume=True, dry_run=dry_run, command="confirm",
                         **run_options)


# ----------------------------------------------------------------------------------------------
# Files


@contextlib.contextmanager
def _local_space(text: str, path: str | None = None) -> Iterator[str]:
    """A local file holding the space: ``path`` itself when it is one, else a temporary copy."""
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="cycleseg-confirm-") as tmp:
        p = Path(tmp) / SPACE_FILE
        p.write_text(text)
        yield str(p)


def _first_missing(sweep_dir: str) -> Path | None:
    """The outermost local folder on the way to ``sweep_dir`` that does not exist yet (what writing creates)."""
    if store.is_uri(sweep_dir):
        return None
    p, missing = store.local_path(sweep_dir), None
    while not p.exists():
        p, missing = p.parent, p
    return missing


def _discard(sweep_dir: str, made: Path | None) -> None:
    """Remove what a confirmation that never started wrote: its two files, and the folders it created if empty."""
    for f in (SPACE_FILE, PROVENANCE_FILE):
        store.delete_file(store.join(sweep_dir, f))
    if made is not None and made.is_dir() and not any(p.is_file() for p in made.rglob("*")):
        shutil.rmtree(made, ignore_errors=True)
