"""Early stopping per grid cell with seeds stopped together, against the known-answer method (no Ray)."""

import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from cycleseg.model.resolve import resolve_config
from cycleseg.sweep.execution.scheduler import CellASHA, milestones
from cycleseg.sweep.planning.space import SchedulerSpec
from cycleseg.sweep.planning.spec import TrialSpec
from tests.known_answer import known_miou, result_for

SPEC = SchedulerSpec(metric="val_miou", mode="max", grace_period=1, reduction_factor=2)
STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE


def cfg(fraction, lambda_2, seed=0, epochs=4):
    return resolve_config({"method": "partial", "labeled_fraction": fraction, "lambda_2": lambda_2, "seed": seed,
                           "epochs": epochs}).to_dict()


def spec(c):
    """The trial value the scheduler reads (``trial_spec`` of a Tune trial), for a config dict."""
    return TrialSpec.build(resolve_config(c), None, ("lambda_2",))


class _Trial:
    def __init__(self, c):
        self.trial_id = f"{c['labeled_fraction']}-{c['lambda_2']}-{c['seed']}"
        self.config = {"trial": {"cfg": c}}


def test_rungs_are_grace_times_eta_powers_below_max_t():
    assert milestones(1, 4, 2) == [1, 2]
    assert milestones(1, 9, 3) == [1, 3]
    assert milestones(2, 20, 2) == [2, 4, 8, 16]


def test_hand_computed_cutoff_within_a_cell():
    s = CellASHA(SPEC, max_t=4)
    # rung 1 of the 10 % cell sees 0.2, then 0.1 (below the cutoff 0.2: stop), then 0.18: cutoff is the
    # median (1 − 1/η = 50th percentile) of {0.2, 0.1} = 0.15 → continue
    assert s.decide(spec(cfg(0.1, 0.01)), {"epoch": 1, "val_miou": 0.2}) == CONTINUE
    assert s.decide(spec(cfg(0.1, 1.0)), {"epoch": 1, "val_miou": 0.1}) == STOP
    assert s.decide(spec(cfg(0.1, 0.1)), {"epoch": 1, "val_miou": 0.18}) == CONTINUE
    # min mode ranks the other way
    low = CellASHA(SPEC.model_copy(update={"mode": "min", "metric": "loss_G_total"}), max_t=4)
    assert low.decide(spec(cfg(0.1, 0.01)), {"epoch": 1, "loss_G_total": 0.2}) == CONTINUE
    assert low.decide(spec(cfg(0.1, 1.0)), {"epoch": 1, "loss_G_total": 0.1}) == CONTINUE
    assert low.decide(spec(cfg(0.1, 0.1)), {"epoch": 1, "loss_G_total": 0.3}) == STOP


def test_the_weaker_cell_keeps_its_best_configurations_where_one_global_asha_stops_them():
    """Every 10 % score lies below every 20 % score: ranked together, the 10 % optimum is stopped."""
    order = [cfg(0.2, lam) for lam in (0.1, 0.03, 0.3)] + [cfg(0.1, lam) for lam in (0.01, 0.3, 0.003)]
    ours = CellASHA(SPEC, max_t=4)
    ray_asha = ASHAScheduler(time_attr="epoch", metric="val_miou", mode="max", max_t=4, grace_period=1,
                             reduction_factor=2)
    decisions = {}
    for c in order:
        trial = _Trial(c)
        ray_asha.on_trial_add(None, trial)
        r = result_for(c, 1)
        decisions[c["labeled_fraction"], c["lambda_2"]] = (ours.decide(spec(c), r),
                                                           ray_asha.on_trial_result(None, trial, r))
    # the 10 % cell's optimum (lambda_2 = 0.01) goes on under per-cell ASHA, and is stopped by Ray's global one
    assert decisions[0.1, 0.01] == (CONTINUE, STOP)
    # within a cell the rule is ASHA's: lambda_2 = 0.3 is 1.5 decades off the 10 % optimum, below the cutoff
    assert decisions[0.1, 0.3][0] == STOP and decisions[0.2, 0.1][0] == CONTINUE


def test_a_configurations_seeds_continue_or_stop_together():
    s = CellASHA(SPEC, max_t=4)
    best, worse = 0.01, 1.0
    assert s.decide(spec(cfg(0.1, best, seed=0)), result_for(cfg(0.1, best, seed=0), 1)) == CONTINUE
    # seed 0 of the worse configuration reaches the rung first and is stopped...
    assert s.decide(spec(cfg(0.1, worse, seed=0)), result_for(cfg(0.1, worse, seed=0), 1)) == STOP
    # ...so its seed 1 stops at its next report, whatever it shows, even before the rung
    assert s.decide(spec(cfg(0.1, worse, seed=1)), {"epoch": 1, "val_miou": 0.99}) == STOP
    # the best configuration's seed 1 follows the decision taken for seed 0 at rung 1, and the rung records the
    # mean of both seeds (0.002 apart by construction)
    assert s.decide(spec(cfg(0.1, best, seed=1)), result_for(cfg(0.1, best, seed=1), 1)) == CONTINUE
    rung = next(iter(s.rungs.values()))[1]
    expected = (known_miou(best, 0.1, 0, 1, 4) + known_miou(best, 0.1, 1, 1, 4)) / 2
    assert max(rung.values()) == pytest.approx(expected)


def test_state_survives_save_and_restore(tmp_path):
    s = CellASHA(SPEC, max_t=4)
    s.decide(spec(cfg(0.1, 0.01)), {"epoch": 1, "val_miou": 0.3})
    s.decide(spec(cfg(0.1, 1.0)), {"epoch": 1, "val_miou": 0.1})
    s.save(str(tmp_path / "s.pkl"))
    t = CellASHA(SPEC, max_t=4)
    t.restore(str(tmp_path / "s.pkl"))
    assert t.stopped == s.stopped and t.decide(spec(cfg(0.1, 1.0, seed=1)), {"epoch": 1, "val_miou": 0.9}) == STOP


def test_a_rung_records_the_value_a_seed_had_when_it_reached_it():
    """Later epochs (past the last rung) never overwrite a rung's record: else a configuration that kept
    improving would raise the bar for the ones that reach that rung after it."""
    s = CellASHA(SPEC, max_t=3)  # rungs 1, 2
    first = cfg(0.2, 0.01, epochs=3)
    for epoch, value in ((1, 0.40), (2, 0.50), (3, 0.90)):
        assert s.decide(spec(first), {"epoch": epoch, "val_miou": value}) == CONTINUE
    assert list(next(iter(s.rungs.values()))[2].values()) == [0.50]
    # at rung 2 the next configuration is compared with 0.50 (what the first had there), not 0.90
    assert s.decide(spec(cfg(0.2, 0.1, epochs=3)), {"epoch": 1, "val_miou": 0.45}) == CONTINUE
    assert s.decide(spec(cfg(0.2, 0.1, epochs=3)), {"epoch": 2, "val_miou": 0.55}) == CONTINUE
