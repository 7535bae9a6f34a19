"""A trial's end (``TrialEnds`` behind the callbacks): its files are final once written, except a failed trial that
a resumed sweep ran again; the console prints the recorded outcome, whichever callback asked first."""

import json
import pickle
from types import SimpleNamespace

from cycleseg.model import checkpoint
from cycleseg.model.resolve import resolve_config
from cycleseg.sweep.execution.callbacks import ConsoleCallback, ResultsCallback
from cycleseg.sweep.execution.trial import TrialEnds
from cycleseg.sweep.results import parquet as res
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
    cb = TrialEnds("s", str(sweep), 0.0)
    cb.finish(trial("a", stored_checkpoint(tmp_path / "a1", 1)), "RuntimeError: worker died")
    assert res.read_trial(sweep, "a")["status"] == "failed"
    # the resumed sweep (resume_errored: a new driver) ran it again from its checkpoint, to the end
    cb = pickle.loads(pickle.dumps(cb))  # as Tune restores callbacks
    cb.finish(trial("a", stored_checkpoint(tmp_path / "a2", 2)), None)
    row = res.read_trial(sweep, "a")
    assert (row["status"], row["epochs_run"], row["error"]) == ("completed", 2, None)
    assert row["steps"] == 2 * res.read_sweeps([sweep]).epochs["steps"].iloc[0]  # budget of the full run
    assert list(res.read_sweeps([sweep]).epochs["epoch"]) == [1, 2]
    # a finished trial's file is final: finishing it once more (a driver killed after it ended) changes nothing
    cb = pickle.loads(pickle.dumps(cb))
    cb.finish(trial("a", stored_checkpoint(tmp_path / "a3", 1)), "RuntimeError: late")
    assert res.read_trial(sweep, "a")["status"] == "completed"


def test_console_names_a_trial_that_ended_before_a_driver_restart_by_its_recorded_outcome(tmp_path, capsys):
    """A resumed driver that sees none of a trial's epochs (it ended just before the kill) prints what the
    trial's row records, not "early-stopped after 0 epoch(s)"."""
    sweep = tmp_path / "s"
    ResultsCallback(TrialEnds("s", str(sweep), 0.0)).on_trial_complete(
        0, [], trial("a", stored_checkpoint(tmp_path / "a1", 2)))  # the driver before the restart
    console = ConsoleCallback(1, 1, ["method"], TrialEnds("s", str(sweep), 0.0))
    console.on_trial_complete(0, [], trial("a"))
    # the end line says what the trial reports: its epoch chosen on val, that epoch's val mIoU, its wall time
    # (the two stored epochs' 1.5 s each, recovered from the checkpoint)
    assert capsys.readouterr().out == ("finished  a (method=cyclegan): finished after 2 epoch(s); reports epoch 2 "
                                       "(best val): val_miou 0.2000; 3s wall\n")
    # no row (one that could not be read back): what this driver saw, 1 of 2 epochs
    console.ends = SimpleNamespace(finish=lambda trial, error: None)
    console.on_trial_start(0, [], trial("b"))
    console.on_trial_result(0, [], trial("b"), {"epoch": 1, "val_miou": 0.25})
    console.on_trial_complete(0, [], trial("b"))
    assert capsys.readouterr().out.splitlines()[-1] == (
        "stopped   b (method=cyclegan): early-stopped by the scheduler after 1 epoch(s)")


def test_the_console_gets_the_row_even_when_it_asks_before_the_results_callback(tmp_path, capsys):
    """Callbacks share one ``TrialEnds``: whichever asks first writes the row once, the other reads the same one."""
    sweep = tmp_path / "s"
    ends = TrialEnds("s", str(sweep), 0.0)
    console, results = ConsoleCallback(1, 1, ["method"], ends), ResultsCallback(ends)
    t = trial("a", stored_checkpoint(tmp_path / "a1", 2))
    console.on_trial_complete(0, [], t)  # the console first: the list order no longer matters
    assert "reports epoch 2 (best val): val_miou 0.2000" in capsys.readouterr().out
    written = (sweep / res.TRIALS_DIR / "a.parquet").stat().st_mtime_ns
    results.on_trial_complete(0, [], t)
    assert (sweep / res.TRIALS_DIR / "a.parquet").stat().st_mtime_ns == written  # not written twice
    assert res.read_trial(sweep, "a")["epochs_run"] == 2
