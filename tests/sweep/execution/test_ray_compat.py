"""Canaries for every Ray internal that ``cycleseg.sweep.execution.ray_compat`` uses: each fails loudly, naming the
hook, when a Ray upgrade moves or renames what it relies on. Upgrading Ray = running these (and the sweep tests)."""

import time
from pathlib import Path

import pytest
import ray
from ray.util.placement_group import placement_group, remove_placement_group

from cycleseg.sweep.execution import ray_compat
from tests.processes import live_actor_classes

pytestmark = pytest.mark.slow


def test_every_train_and_tune_knob_is_still_read_by_ray():
    """TRAIN_ENV: each variable still appears in the Ray source that reads it (else it silently does nothing)."""
    root = Path(ray.__file__).parent
    sources = [p.read_text(errors="ignore") for sub in ("train", "tune", "air") for p in (root / sub).rglob("*.py")]
    for name in ray_compat.TRAIN_ENV:
        assert any(f'"{name}"' in text for text in sources), f"Ray {ray.__version__} no longer reads {name}"


def test_train_still_adds_the_placement_group_cleaner_we_drop():
    """without_placement_group_cleaner: the class still exists under that path and a TorchTrainer adds it."""
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(lambda: None, scaling_config=ray.train.ScalingConfig(num_workers=1))
    names = [type(c).__name__ for c in trainer._create_default_callbacks()]
    assert "PlacementGroupCleanerCallback" in names, names
    kept = [type(c).__name__ for c in ray_compat.without_placement_group_cleaner(trainer._create_default_callbacks())]
    assert "PlacementGroupCleanerCallback" not in kept and len(kept) == len(names) - 1


def test_placement_group_table_fields_and_removal(cluster):
    """placement_groups / made_by_an_actor / is_removed / remove_placement_groups, and the fields callbacks read."""

    @ray.remote(num_cpus=0)
    class Maker:
        def make(self) -> str:
            pg = placement_group([{"CPU": 0.01}])
            ray.get(pg.ready())
            return pg.id.hex()

    maker = Maker.remote()
    from_actor = ray.get(maker.make.remote())
    from_driver = placement_group([{"CPU": 0.01}])
    ray.get(from_driver.ready())
    try:
        table = {g.placement_group_id.hex(): g for g in ray_compat.placement_groups()}
        mine = table[from_actor]
        for field in ("creator_actor_id", "creator_job_id", "creator_actor_dead", "is_detached", "state"):
            assert hasattr(mine, field), f"PlacementGroupTableData has no '{field}' in Ray {ray.__version__}"
        assert ray_compat.made_by_an_actor(mine) and not mine.creator_actor_dead
        assert not ray_compat.made_by_an_actor(table[from_driver.id.hex()])  # nil creator: all 0xff
        assert mine.creator_job_id.hex() == ray.get_runtime_context().get_job_id()
        ray.kill(maker)
        deadline = time.time() + 30
        while True:  # the GCS learns of the kill asynchronously; the callbacks wait for it the same way
            dead = {g.placement_group_id.hex(): g for g in ray_compat.placement_groups()}[from_actor]
            if dead.creator_actor_dead or time.time() > deadline:
                break
            time.sleep(0.2)
        assert dead.creator_actor_dead and not ray_compat.is_removed(dead)
        ray_compat.remove_placement_groups([dead])
        after = {g.placement_group_id.hex(): g for g in ray_compat.placement_groups()}
        assert ray_compat.is_removed(after[from_actor])
        assert not ray_compat.is_removed(after[from_driver.id.hex()])
    finally:
        remove_placement_group(from_driver)


def test_live_actor_classes_names_the_actors_alive_now(cluster):
    @ray.remote(num_cpus=0)
    class CanaryActor:
        def ping(self) -> int:
            return 1

    a = CanaryActor.remote()
    ray.get(a.ping.remote())
    assert any(name.endswith("CanaryActor") for name in live_actor_classes())
    ray.kill(a)
