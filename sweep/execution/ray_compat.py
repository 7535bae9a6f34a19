"""Every use of Ray's private modules and internal knobs, in one place (canaries: tests/sweep/test_ray_compat.py).

Ray 2.60 (Tune + Train V2) needs a few things its public API does not offer; each is named here with
why, so upgrading Ray means running the canary tests, which fail loudly when one of these moves:

- ``TRAIN_ENV``: Train V2 knobs read from the environment before ``ray.init`` (shared notes,
  "Overhead"): the controller polls its workers every 2 s by default; the preemption watcher and
  Train's metrics start actors we do not use. Tune saves its experiment state every second so a
  killed driver loses little, and ``RAY_AIR_NEW_OUTPUT=0`` keeps Tune's classic output path.
- ``without_placement_group_cleaner``: Train starts a detached cleaner actor per run that asks the
  dashboard whether its controller still lives; without the dashboard it never learns and lives on.
- ``placement_groups`` / ``remove_placement_groups``: the GCS table with each group's creator
  (``placement_group_table()`` omits it), to free what an early-stopped trial's Train run leaves.
- ``bootstrap_address``: what ``ray.init(address=...)`` will dial ("auto" read from the environment and
  the last ``ray start``), so a sweep can check it answers before ``ray.init`` retries for minutes.
"""

from __future__ import annotations

from typing import Any

import ray

TRAIN_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    # Ctrl-C reaches the driver as KeyboardInterrupt: Tune's own handler ends the running trials as if they had
    # finished (a resume would never train them again); interrupted, they resume from their last checkpoint
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
}


def without_placement_group_cleaner(callbacks: list[Any]) -> list[Any]:
    """Train's default run callbacks minus its ``PlacementGroupCleanerCallback``."""
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    return [c for c in callbacks if not isinstance(c, PlacementGroupCleanerCallback)]


def placement_groups() -> list[Any]:
    """Every placement group as GCS keeps it: ``PlacementGroupTableData`` with its creator actor and job."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    accessor = state._connect_and_get_accessor()
    return [gcs_pb2.PlacementGroupTableData.FromString(b) for b in accessor.get_placement_group_table()]


def made_by_an_actor(group: Any) -> bool:
    """False for groups a driver process made (Tune's trial groups): their creator actor id is nil (all 0xff)."""
    return set(group.creator_actor_id) != {0xFF}


def is_removed(group: Any) -> bool:
    from ray.core.generated import gcs_pb2

    return group.state == gcs_pb2.PlacementGroupTableData.REMOVED


def remove_placement_groups(groups: list[Any]) -> None:
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    for g in groups:
        if not is_removed(g):
            ray.util.remove_placement_group(PlacementGroup(PlacementGroupID(g.placement_group_id)))


def bootstrap_address(address: str) -> str | None:
    """``address`` as the host:port ``ray.init`` connects to; None when "auto" finds no running cluster."""
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(address)
