"""The stored plan (sweep.json): what --resume reads back."""

import json

from cycleseg.model.config import LATER_FIELDS
from cycleseg.sweep.planning.plan import Plan
from cycleseg.sweep.planning.space import load_space


def test_a_plan_stored_before_fields_were_added_resumes_as_the_same_trials():
    plan = Plan.build(load_space("demo"), {})
    stored = json.loads(plan.to_json())
    for t in stored["trials"]:  # as an older cycleseg wrote it
        t["cfg"] = {k: v for k, v in t["cfg"].items() if k not in LATER_FIELDS}
    old = Plan.from_json(json.dumps(stored))
    assert all(set(LATER_FIELDS) <= set(t["cfg"]) for t in old.trials)
    assert old.same_trials(plan)  # so `sweep SPACE --resume` accepts it


SEARCH_SPACE = """
base: {dataset: digits, preset: tiny, image_height: 32, image_width: 32, digits_train: 24, digits_val: 8,
       digits_test: 8, epochs: 3}
grid: {labeled_fraction: [0.1, 0.2]}
seeds: [0, 1]
search:
  num_samples: 3
  params: {lambda_2: {distribution: loguniform, low: 0.01, high: 1.0}}
  points_to_evaluate: [{lambda_2: 0.05}]
scheduler: {type: asha, grace_period: 1, reduction_factor: 3}
"""


def test_the_stored_plan_holds_the_search_and_scheduler_so_a_resume_never_reads_the_space(tmp_path, capsys):
    from cycleseg.sweep.planning.dry_run import print_dry_run

    f = tmp_path / "space.yaml"
    f.write_text(SEARCH_SPACE)
    stored = Plan.build(load_space(f), {}).to_json()
    # after the driver died, the space file is edited, then deleted: the resumed sweep runs what it started with
    f.write_text(SEARCH_SPACE.replace("num_samples: 3", "num_samples: 9").replace("factor: 3", "factor: 2"))
    f.unlink()
    plan = Plan.from_json(stored)
    assert not plan.legacy
    assert plan.search_spec().num_samples == 3 and plan.search_spec().points_to_evaluate == [{"lambda_2": 0.05}]
    assert plan.search_spec().params["lambda_2"].to_optuna().log
    assert (plan.scheduler_spec().grace_period, plan.scheduler_spec().reduction_factor) == (1, 3)
    print_dry_run(plan)  # what --resume --dry-run prints: from sweep.json alone
    out = capsys.readouterr().out
    assert "12 trials = 2 grid cell(s) × 3 tpe samples of lambda_2 × seeds [0, 1]" in out
    assert "reduction factor 3" in out
    # a space that now searches otherwise is not the sweep it resumes
    f.write_text(SEARCH_SPACE.replace("num_samples: 3", "num_samples: 9"))
    assert not Plan.build(load_space(f), {}).same_trials(plan)


def test_a_plan_stored_before_it_kept_the_search_reads_it_from_the_space_file(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text(SEARCH_SPACE)
    stored = json.loads(Plan.build(load_space(f), {}).to_json())
    del stored["search"], stored["scheduler"]  # as an older cycleseg wrote it
    old = Plan.from_json(json.dumps(stored))
    assert old.legacy and old.search_spec().num_samples == 3 and old.scheduler_spec().reduction_factor == 3
