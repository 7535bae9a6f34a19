"""Experiment tracking, opt-in: ``cycleseg sweep --mlflow URI`` logs every trial as an MLflow run.

One MLflow experiment per sweep (named after it), one run per trial (named by its trial id): the
resolved config as params, every epoch's metrics as Tune receives them (val metrics, losses, lr,
the budget so far) with the epoch as the step, and when the trial ends its status, the selected
epoch's metrics (test included: reported, never chosen on) and its sample grid as an artifact. MLflow
is an optional extra (``pip install 'cycleseg[mlflow]'``); ``--mlflow`` without it is refused before
anything runs.
"""

from __future__ import annotations

import json
import math
import socket
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

from ray import tune

from ...model.errors import UserError
from ..planning.spec import TrialFacts, trial_spec
from .trial import TrialEnds, error_text

EXTRA = "pip install 'cycleseg[mlflow]'"
WEB = frozenset({"http", "https"})
TRACKING_SCHEMES = WEB | {"file", "sqlite", "postgresql", "mysql", "mssql", "databricks"}
CONNECT_TIMEOUT_S = 5.0


def check_tracking(uri: str | None) -> None:
    """Refuse, before Ray starts, an ``--mlflow`` that could not log: MLflow not installed, a URI that is not
    one, or a tracking server that does not answer (else every trial would fail at its first log call)."""
    if uri is None:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise UserError(f"--mlflow needs MLflow, an optional extra: {EXTRA}") from None
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in TRACKING_SCHEMES:
        raise UserError(f"--mlflow '{uri}' is not a tracking URI; give the server's address (e.g. "
                        f"http://127.0.0.1:5000) or a store ({', '.join(sorted(TRACKING_SCHEMES - WEB))} URI)")
    if parts.scheme in WEB:
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            socket.create_connection((parts.hostname or "", port), timeout=CONNECT_TIMEOUT_S).close()
        except (OSError, ValueError) as e:
            why = e.strerror or type(e).__name__ if isinstance(e, OSError) else str(e)
            raise UserError(f"--mlflow: nothing answers at '{uri}' ({why}); start the tracking server "
                            "(`mlflow server --host 127.0.0.1 --port 5000`) or check the address") from None


def _numbers(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    return {prefix + k: float(v) for k, v in record.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))}


class MlflowCallback(tune.Callback):
    """Each trial as an MLflow run (module docstring). Holds only the URI and ids, so Tune can save it."""

    def __init__(self, uri: str, sweep: str, ends: TrialEnds) -> None:
        self.uri, self.sweep, self.ends = uri, sweep, ends  # ends: each ended trial's row, shared with the others
        self.runs: dict[str, str] = {}  # trial id -> MLflow run id

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def _run(self, trial: Any) -> str:
        if trial.trial_id not in self.runs:
            client = self._client()
            exp = client.get_experiment_by_name(self.sweep)
            exp_id = exp.experiment_id if exp is not None else client.create_experiment(self.sweep)
            spec = trial_spec(trial)
            cfg = spec.cfg.to_dict()
            run = client.create_run(exp_id, run_name=trial.trial_id, tags={
                "cycleseg.sweep": self.sweep, "cycleseg.trial_id": trial.trial_id,
                "cycleseg.variant": str(spec.variant or "")})
            from mlflow.entities import Param

            client.log_batch(run.info.run_id, params=[Param(k, json.dumps(v) if not isinstance(v, str) else v)
                                                      for k, v in cfg.items()])
            self.runs[trial.trial_id] = run.info.run_id
        return self.runs[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" not in result:
            return
        from mlflow.entities import Metric

        run_id, now, step = self._run(trial), int(time.time() * 1000), int(result["epoch"])
        keep = {k: v for k, v in result.items() if k not in ("epoch", *TrialFacts.names())}
        metrics = [Metric(k, v, now, step) for k, v in _numbers(keep).items()]
        self._client().log_batch(run_id, metrics=metrics)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, error_text(trial))

    def _end(self, trial: Any, error: str | None) -> None:
        """Log what the trial reports: its row, from ``TrialEnds`` (written once, whichever callback asks first)."""
        client, run_id = self._client(), self._run(trial)
        row = self.ends.finish(trial, error) or {}
        status = row.get("status", "failed")
        selected = {k: row.get(k) for k in ("selected_epoch", "val_miou", "test_miou", "test_pixel_acc",
                                            "best_val_miou", "final_val_miou", "final_test_miou", "steps",
                                            "labeled_images_seen", "unlabeled_images_seen", "wall_seconds")}
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(f"selected/{k}", v, now, 0) for k, v in _numbers(selected).items()])
        client.set_tag(run_id, "cycleseg.status", status)
        if row.get("checkpoint_path") and status in ("completed", "early_stopped"):
            self._log_samples(client, run_id, row["checkpoint_path"])
        client.set_terminated(run_id, "FINISHED" if status != "failed" else "FAILED")

    def _log_samples(self, client: Any, run_id: str, checkpoint_path: str) -> None:
        from ...model.checkpoint import load_trial
        from ...model.data import prepare_dataset
        from ...model.visualize import save_sample_grid
        from ..storage import local_copy

        with local_copy(checkpoint_path) as local, tempfile.TemporaryDirectory() as tmp:
            cfg, method, _ = load_trial(local)
            png = Path(tmp) / "samples.png"
            save_sample_grid(png, {cfg.method: method}, prepare_dataset(cfg), generator=method)
            client.log_artifact(run_id, str(png))
