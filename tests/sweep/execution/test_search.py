"""Search inside grid cells: one Optuna search per cell, every suggestion run once per seed."""

import pytest

from cycleseg.model.resolve import resolve_config
from cycleseg.sweep.planning.space import load_space
from tests.sweep.planning.test_space import tiny, write


def test_cell_searcher_replicates_each_suggestion_over_seeds_and_tells_optuna_the_mean(tmp_path):
    from ray.tune.search import Searcher

    from cycleseg.sweep.execution.search import CellSearcher
    from cycleseg.sweep.planning.plan import Plan

    p = write(tmp_path, tiny("""
    grid:
      labeled_fraction: [0.2, 0.5]
    seeds: [0, 1]
    search:
      num_samples: 2
      params:
        lambda_2: {distribution: loguniform, low: 0.005, high: 0.5}
      points_to_evaluate:
        - {lambda_2: 0.05}
    """))
    space = load_space(p)
    plan = Plan.build(space, {})
    assert plan.num_trials == 2 * 2 * 2
    s = CellSearcher(plan.cells, space.search, plan.seeds, str(tmp_path / "sweep"))
    got = [s.suggest(f"t{i}") for i in range(8)]
    assert s.suggest("t8") == Searcher.FINISHED
    cfgs = [g["trial"]["cfg"] for g in got]
    # each suggestion runs once per seed, back to back; the cells take turns; the paper's point first
    assert [(c["labeled_fraction"], c["seed"]) for c in cfgs] == [(0.2, 0), (0.2, 1), (0.5, 0), (0.5, 1)] * 2
    assert cfgs[0]["lambda_2"] == cfgs[1]["lambda_2"] == 0.05 and cfgs[2]["lambda_2"] == 0.05
    assert cfgs[4]["lambda_2"] == cfgs[5]["lambda_2"] != 0.05 and 0.005 <= cfgs[4]["lambda_2"] <= 0.5
    assert all(resolve_config(c).lambda_2 == c["lambda_2"] for c in cfgs)
    # objective = the metric at each seed's selected epoch (best val), averaged over seeds; told once both ended
    for e, v in enumerate((0.2, 0.6, 0.4), 1):
        s.on_trial_result("t0", {"epoch": e, "val_miou": v})
    s.on_trial_complete("t0", {"epoch": 3, "val_miou": 0.4})
    study = s.inner[0]._ot_study
    assert [t.value for t in study.trials if t.value is not None] == []
    s.on_trial_complete("t1", {"epoch": 1, "val_miou": 0.3})
    assert [t.value for t in study.trials if t.value is not None] == [pytest.approx(0.45)]
    # a seed that failed counts as missing; both failed: the suggestion is failed for Optuna
    s.on_trial_complete("t2", error=True)
    s.on_trial_complete("t3", error=True)
    assert [t.state.name for t in s.inner[1]._ot_study.trials][:1] == ["FAIL"]
    # the same, mirrored to the sweep's journal for optuna-dashboard: one study per cell, named after it
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = JournalStorage(JournalFileBackend(str(tmp_path / "sweep" / "optuna.journal")))
    assert sorted(st.study_name for st in optuna.study.get_all_study_summaries(storage=journal)) == [
        "labeled_fraction=0.2", "labeled_fraction=0.5"]
    low = optuna.load_study(study_name="labeled_fraction=0.2", storage=journal)
    (t,) = low.trials
    assert (t.value, t.params, t.user_attrs["seeds"]) == (pytest.approx(0.45), {"lambda_2": 0.05}, 2)
    assert low.direction == optuna.study.StudyDirection.MAXIMIZE
    assert [t.state.name for t in optuna.load_study(study_name="labeled_fraction=0.5", storage=journal).trials] \
        == ["FAIL"]
    # a restarted driver that reports the configuration again adds nothing
    s.journal.record(0, "cell0-sample0", {"lambda_2": 0.05}, {"lambda_2": space.search.params["lambda_2"].to_optuna()},
                     0.45, 2)
    assert len(optuna.load_study(study_name="labeled_fraction=0.2", storage=journal).trials) == 1


def test_tpe_in_each_cell_moves_to_that_cells_known_optimum(tmp_path):
    """The searcher Tune runs, driven with the known-answer scores: 5 random samples, then 25 from TPE per cell."""
    import math

    from cycleseg.sweep.execution.search import CellSearcher
    from cycleseg.sweep.planning.plan import Plan
    from tests.known_answer import OPTIMUM, known_miou

    p = write(tmp_path, tiny("""
    grid:
      labeled_fraction: [0.1, 0.2]
    search:
      num_samples: 30
      startup_trials: 5
      params:
        lambda_2: {distribution: loguniform, low: 0.001, high: 1.0}
    """))
    space = load_space(p)
    plan = Plan.build(space, {})
    s = CellSearcher(plan.cells, space.search, plan.seeds)
    drawn: dict[float, list[float]] = {0.1: [], 0.2: []}
    for i in range(plan.num_trials):
        c = s.suggest(f"t{i}")["trial"]["cfg"]
        frac, lam = c["labeled_fraction"], c["lambda_2"]
        drawn[frac].append(lam)
        s.on_trial_complete(f"t{i}", {"epoch": 2, "val_miou": known_miou(lam, frac, c["seed"], 2, 2)})
    for frac, lams in drawn.items():
        off = [abs(math.log10(lam / OPTIMUM[frac])) for lam in lams]  # decades from the cell's optimum
        assert len(off) == 30
        # the best sample (what the search picks) is within 0.1 decades of the optimum
        assert min(off) < 0.1, (frac, off)
        # TPE's last 15 samples: ≥ 9 within 0.5 decades of it; uniform sampling of the 3 decades puts 1/3 there,
        # and 9 or more of 15 such draws has probability 0.03
        assert sum(o < 0.5 for o in off[15:]) >= 9, (frac, off)


def test_epochs_a_restarted_driver_never_saw_are_read_from_the_checkpoint(tmp_path):
    """best_val over the whole history: an epoch reported before a driver restart still counts (test stripped)."""
    import json

    from cycleseg.model import checkpoint
    from cycleseg.sweep.execution.search import CellSearcher
    from cycleseg.sweep.planning.plan import Plan
    from tests.records import epoch_record

    space = load_space(write(tmp_path, tiny("""
    seeds: [0]
    search:
      num_samples: 1
      params:
        lambda_2: {distribution: loguniform, low: 0.005, high: 0.5}
    """)))
    plan = Plan.build(space, {})
    s = CellSearcher(plan.cells, space.search, plan.seeds, str(tmp_path))
    s.suggest("t0")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / checkpoint.HISTORY).write_text(json.dumps([epoch_record(1, 0.9, test_miou=0.1),
                                                       epoch_record(2, 0.5, test_miou=0.99)]))
    # the new driver only saw epoch 2
    s.on_trial_complete("t0", {"epoch": 2, "val_miou": 0.5, "checkpoint_path": str(ckpt)})
    told = [t.value for t in s.inner[0]._ot_study.trials if t.value is not None]
    assert told == [pytest.approx(0.9)]  # epoch 1's val, not epoch 2's and never a test value
