"""The stored plan (sweep.json): what --resume reads back."""

import json

from cycleseg.model.config import LATER_FIELDS
from cycleseg.sweep.plan import Plan
from cycleseg.sweep.space import load_space


def test_a_plan_stored_before_fields_were_added_resumes_as_the_same_trials():
    plan = Plan.build(load_space("demo"), {})
    stored = json.loads(plan.to_json())
    for t in stored["trials"]:  # as an older cycleseg wrote it
        t["cfg"] = {k: v for k, v in t["cfg"].items() if k not in LATER_FIELDS}
    old = Plan.from_json(json.dumps(stored))
    assert all(set(LATER_FIELDS) <= set(t["cfg"]) for t in old.trials)
    assert old.same_trials(plan)  # so `sweep SPACE --resume` accepts it
