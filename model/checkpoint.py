"""The checkpoint format: one folder per run, replaced atomically every epoch.

``<workdir>/checkpoint/`` holds

- ``state.pt``: every network, optimizer and lr scheduler, the RNG states and the epoch: what
  ``--resume`` needs to continue bit-exactly (on CPU);
- ``history.json``: the per-epoch metrics so far (``cycleseg.model.records``), small, so that reports
  and the sweep read them without loading the networks;
- ``config.yaml``: the resolved config the run was made with;
- ``reported.pt``: the networks of the epoch the run reports (config ``select``: with best_val often not the
  latest), tensors and plain values only, so reports and sample grids load it with ``weights_only=True``.

This module is the only one that knows these file names.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import TrialConfig, config_to_yaml
from .data import DatasetInfo
from .device import resolve_device
from .errors import UserError
from .methods import Method, create_method
from .records import selected_epoch

FOLDER = "checkpoint"
STATE = "state.pt"
HISTORY = "history.json"
CONFIG = "config.yaml"
REPORTED = "reported.pt"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(
    path: Path, cfg: TrialConfig, info: DatasetInfo, method: Method, schedulers: dict, epoch: int,
    history: list[dict[str, Any]],
) -> None:
    """Write the checkpoint folder ``path`` atomically: a temp folder renamed over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {
        "epoch": epoch,
        "method": method.state_dict(),
        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
        "rng": rng_state(),
        "info": asdict(info),
    }
    torch.save(state, tmp / STATE)
    chosen = selected_epoch(history, cfg.select)
    if chosen is not None and chosen["epoch"] == epoch:
        networks = {n: m.state_dict() for n, m in method.raw_networks.items()}
        torch.save({"epoch": epoch, "info": state["info"], "networks": networks}, tmp / REPORTED)
    elif chosen is not None and (path / REPORTED).is_file():  # an earlier epoch stays the reported one
        shutil.copy2(path / REPORTED, tmp / REPORTED)
    (tmp / HISTORY).write_text(json.dumps(history))  # NaN stays NaN (json writes and reads it)
    (tmp / CONFIG).write_text(config_to_yaml(cfg))
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _damaged(path: Path, why: str) -> UserError:
    return UserError(f"checkpoint '{path}' is damaged ({why}); delete that folder and start again without --resume")


def load_state(path: Path) -> dict[str, Any]:
    """``state.pt`` of the checkpoint folder ``path``; a ``UserError`` naming the fix when absent or damaged."""
    f = Path(path) / STATE
    if not f.is_file():
        raise UserError(f"no checkpoint at '{f}'; run without --resume first")
    try:
        state = torch.load(f, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise _damaged(Path(path), f"{STATE}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(state, dict) or not {"epoch", "method", "schedulers", "rng", "info"} <= set(state):
        raise _damaged(Path(path), f"{STATE} lacks the run state")
    return state


def parse_history(text: str, where: str = HISTORY) -> list[dict[str, Any]]:
    """The per-epoch metrics in a ``history.json`` text; a ``UserError`` when it is not one."""
    try:
        history = json.loads(text)
    except ValueError as e:
        raise UserError(f"{where} is damaged ({e}); delete the run's checkpoint folder and run it again") from None
    if not isinstance(history, list) or not all(isinstance(m, dict) and "epoch" in m for m in history):
        raise UserError(f"{where} is not a list of epoch records; delete the run's checkpoint folder and run it again")
    return history


def read_history(path: Path) -> list[dict[str, Any]]:
    """The per-epoch metrics of the checkpoint folder ``path`` (empty when there is none)."""
    f = Path(path) / HISTORY
    if not f.is_file():
        return []
    return parse_history(f.read_text(), str(f))


def load_trial(path: str | Path, device: str = "cpu") -> tuple[TrialConfig, Method, int]:
    """Rebuild a trained method at the epoch its run reports, from a checkpoint folder (for reports and sample
    grids); returns (config, method, that epoch). Only tensors are unpickled, unless the folder predates
    ``reported.pt`` (then its latest state, read as before)."""
    from .resolve import load_config_file, resolve_config

    path = Path(path)
    cfg = resolve_config({**load_config_file(path / CONFIG), "device": device})
    if (path / REPORTED).is_file():
        try:
            state = torch.load(path / REPORTED, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
            raise _damaged(path, f"{REPORTED}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    else:
        state = load_state(path)
    info = DatasetInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["info"].items()})
    method = create_method(cfg, info, resolve_device(device), total_iters=1)
    if "networks" in state:
        for name, weights in state["networks"].items():
            method.raw_networks[name].load_state_dict(weights)
    else:
        method.load_state_dict(state["method"])
    return cfg, method, int(state["epoch"])
