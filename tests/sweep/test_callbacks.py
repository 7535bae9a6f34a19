"""ResultsCallback: a trial's files are final once written, except a failed trial that a resumed sweep ran again."""

import json
from types import SimpleNamespace

from cycleseg.model import checkpoint
from cycleseg.model.resolve import resolve_config
from cycleseg.sweep import results as res
from cycleseg.sweep.callbacks import ResultsCallback
from tests.records import epoch_record

CFG = resolve_config({"dataset": "digits", "preset": "tiny", "epochs": 2, "image_height": 32, "image_width": 32})


def trial(tid, ckpt=None):
    """What the callback reads of a Tune trial."""
    return SimpleNamespace(trial_id=tid, config={"trial": {"cfg": CFG.to_dict(), "variant": None}},
                           last_result={"checkpoint_path": str(ckpt)} if ckpt else {}, error_file=None,
                           get_error=lambda: "RuntimeError: worker died")


def stored_checkpoint(folder, epochs):
    folder.mkdir(parents=True)
    (folder / checkpoint.HISTORY).write_text(json.dumps([epoch_record(e, 0.1 * e) for e in range(1, epochs + 1)]))
    return folder


def test_a_failed_trial_run_again_by_resume_replaces_its_row_and_a_finished_one_stays(tmp_path):
    sweep = tmp_path / "s"
    cb = ResultsCallback("s", str(sweep), 0.0)
    cb.finish(trial("a", stored_checkpoint(tmp_path / "a1", 1)), "RuntimeError: worker died")
    assert res.read_trial(sweep, "a")["status"] == "failed"
    # the resumed sweep (resume_errored) ran it again from its checkpoint, to the end
    cb.finish(trial("a", stored_checkpoint(tmp_path / "a2", 2)), None)
    row = res.read_trial(sweep, "a")
    assert (row["status"], row["epochs_run"], row["error"]) == ("completed", 2, None)
    assert row["steps"] == 2 * res.read_sweeps([sweep]).epochs["steps"].iloc[0]  # budget of the full run
    assert list(res.read_sweeps([sweep]).epochs["epoch"]) == [1, 2]
    # a finished trial's file is final: finishing it once more (a driver killed after it ended) changes nothing
    cb.finish(trial("a", stored_checkpoint(tmp_path / "a3", 1)), "RuntimeError: late")
    assert res.read_trial(sweep, "a")["status"] == "completed"
