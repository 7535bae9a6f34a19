"""A trial's life: ``latest`` always names a complete checkpoint; a node without the storage stops; a trial
restored after its end reports it again; its config is resolved once per start."""

import pytest

from cycleseg.sweep.execution.trial import TrialCheckpoints


def local_checkpoint(tmp_path, epoch):
    d = tmp_path / f"local{epoch}"
    d.mkdir()
    (d / "state.pt").write_text(f"epoch {epoch}")
    (d / "history.json").write_text("[]")
    return d


def test_each_epoch_replaces_the_last_and_latest_moves_only_once_it_is_complete(tmp_path):
    root = tmp_path / "train" / "t1"
    c = TrialCheckpoints(str(root))
    assert c.latest() is None  # a new trial
    first = c.save(local_checkpoint(tmp_path, 1), 1)
    assert first == f"{root}/checkpoint_epoch0001" and c.latest() == first
    # epoch 2's upload died half-way: latest still names epoch 1, which is still there
    partial = root / "checkpoint_epoch0002"
    partial.mkdir()
    (partial / "state.pt").write_text("torn")
    assert c.latest() == first and (root / "checkpoint_epoch0001" / "state.pt").read_text() == "epoch 1"
    # the restarted trial saves epoch 2 again: the torn folder is replaced, epoch 1's is deleted
    second = c.save(local_checkpoint(tmp_path, 2), 2)
    assert c.latest() == second and (partial / "state.pt").read_text() == "epoch 2"
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint_epoch0002", "latest"]
    assert sorted(p.name for p in partial.iterdir()) == ["history.json", "state.pt"]
    # killed after moving latest but before deleting the one before: the next save removes that one too
    (root / "checkpoint_epoch0001").mkdir()
    third = c.save(local_checkpoint(tmp_path, 3), 3)
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint_epoch0003", "latest"]
    # a finished trial run again reports its last epoch once more: the complete stored copy is kept as is
    other = tmp_path / "other"
    other.mkdir()
    (other / "state.pt").write_text("not the stored one")
    assert c.save(other, 3) == third and (root / "checkpoint_epoch0003" / "state.pt").read_text() == "epoch 3"


def test_a_trial_on_a_node_that_cannot_see_the_storage_stops_with_what_to_use(tmp_path):
    """A node-local --storage on a cluster: the trial's node has no sweep.json there (the driver wrote it)."""
    from cycleseg.model.errors import UserError
    from cycleseg.sweep.execution.trial import tune_worker

    with pytest.raises(UserError, match=r"cannot see the sweep's storage .* shared by every node .* s3://"):
        tune_worker(None, {}, str(tmp_path / "runs" / "s"), "t1")


def test_a_trial_restored_after_its_last_epoch_reports_it_again_and_trains_no_further(tmp_path, monkeypatch):
    """A driver killed after a trial's last checkpoint but before it recorded the end: the resumed run must give
    Tune that epoch again (else Tune's last result is an older one), and must not train on."""
    from cycleseg.model.data import prepare_dataset
    from cycleseg.model.resolve import resolve_config
    from cycleseg.sweep import storage
    from cycleseg.sweep.execution.trial import _train
    from cycleseg.sweep.planning.spec import TrialSpec

    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))
    cfg = {"dataset": "digits", "preset": "tiny", "method": "partial", "digits_train": 12, "digits_val": 6,
           "digits_test": 6, "image_height": 32, "image_width": 32, "epochs": 1, "device": "cpu"}
    data = prepare_dataset(resolve_config(cfg))
    checkpoints = TrialCheckpoints(str(tmp_path / "train" / "t1"))
    reports = []

    def report(metrics, checkpoint_dir):
        reports.append({**metrics, "checkpoint_path": checkpoints.save(checkpoint_dir, int(metrics["epoch"]))})

    spec = TrialSpec.build(resolve_config(cfg), None)
    _train(spec, data, "t1-test", None, "cpu", report, 0.0)
    assert [(r["epoch"], r["resumed"]) for r in reports] == [(1, False)]
    stored = (tmp_path / "train" / "t1" / "checkpoint_epoch0001" / "state.pt").read_bytes()
    _train(spec, data, "t1-test", storage.local_copy(checkpoints.latest()), "cpu", report, 0.0)
    assert [(r["epoch"], r["resumed"]) for r in reports] == [(1, False), (1, True)]
    assert reports[1]["val_miou"] == reports[0]["val_miou"] and not any(k.startswith("test_") for k in reports[1])
    assert reports[1]["checkpoint_path"] == checkpoints.latest()
    assert (tmp_path / "train" / "t1" / "checkpoint_epoch0001" / "state.pt").read_bytes() == stored  # not retrained


def test_a_trial_start_resolves_its_config_once(tmp_path, monkeypatch):
    """Tune's trainable, from the trial's param to its last report: one ``resolve_config`` (the trial value is
    built once and passed down; the device, the data key and the checks all read it)."""
    import sys
    from types import SimpleNamespace

    from cycleseg.model import resolve
    from cycleseg.model.data import cache_key, prepare_dataset
    from cycleseg.model.resolve import resolve_config
    from cycleseg.sweep.execution import trial as trial_module
    from cycleseg.sweep.execution.cluster import Resources
    from cycleseg.sweep.planning.plan import PLAN_FILE
    from cycleseg.sweep.planning.spec import PARAM, TrialSpec

    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))
    cfg = resolve_config({"dataset": "digits", "preset": "tiny", "method": "partial", "digits_train": 12,
                          "digits_val": 6, "digits_test": 6, "image_height": 32, "image_width": 32, "epochs": 2,
                          "device": "cpu"})
    data = prepare_dataset(cfg)
    sweep_dir = tmp_path / "runs" / "s"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / PLAN_FILE).write_text("{}")
    reports = []
    monkeypatch.setattr(trial_module.tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: "t1"))
    monkeypatch.setattr(trial_module.tune, "report", reports.append)
    monkeypatch.setattr(trial_module.ray, "get", lambda ref: ref)  # the data itself stands in for its object ref
    calls = []
    original = resolve.resolve_config

    def counting(*layers):
        calls.append(layers)
        return original(*layers)

    for module in list(sys.modules.values()):  # every module that imported it by name
        if getattr(module, "__name__", "").startswith("cycleseg") and getattr(module, "resolve_config", None) \
                is original:
            monkeypatch.setattr(module, "resolve_config", counting)
    config = {PARAM: TrialSpec.build(cfg, None).to_param()}
    trial_module.cycleseg_trial(config, settings={"resources": Resources(1, 1.0, 0.0), "sweep_dir": str(sweep_dir)},
                                data_refs={cache_key(cfg): data})
    assert [r["epoch"] for r in reports] == [1, 2]
    assert len(calls) == 1
