"""A single-worker trial: ``latest`` always names a complete checkpoint; a node without the storage stops."""

import pytest

from cycleseg.sweep.worker import TrialCheckpoints


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


def test_a_trial_on_a_node_that_cannot_see_the_storage_stops_with_what_to_use(tmp_path):
    """A node-local --storage on a cluster: the trial's node has no sweep.json there (the driver wrote it)."""
    from cycleseg.model.errors import UserError
    from cycleseg.sweep.worker import tune_worker

    with pytest.raises(UserError, match=r"cannot see the sweep's storage .* shared by every node .* s3://"):
        tune_worker({}, str(tmp_path / "runs" / "s"), "t1")
