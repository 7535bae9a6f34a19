"""The built wheel, installed (not editable) into a fresh virtual environment, works from any folder.

The wheel must hold only ``cycleseg/`` (with the shipped search spaces, their JSON Schema and the paper's
tables) and its dist-info. Installed from it, and run from a folder holding its own ``model.py``,
``sweep.py`` and ``cli.py`` (as research folders do; each raises if imported), every shipped space
dry-runs, ``debug`` trains one tiny epoch, and a one-trial sweep on the embedded Ray completes.

To keep the suite fast, the fresh environment takes cycleseg's dependencies (torch, ray, ...) from the
test's own environment through a path entry; cycleseg itself comes only from the wheel.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from cycleseg.model.plugins import ENV as PLUGINS_ENV

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SHADOWS = ("model.py", "sweep.py", "cli.py")
# what other tests of the same session may have set: the sweep tests' PYTHONPATH holds the checkout (whose
# cycleseg.egg-info would make pip skip the wheel as "already installed") and their plugin list names
# modules under tests/, which a user's environment does not have
FOREIGN = ("PYTHONPATH", "RAY_ADDRESS", PLUGINS_ENV)


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user who only installed the wheel."""
    return {**{k: v for k, v in os.environ.items() if k not in FOREIGN}, **extra}


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy: setuptools writes build/ and *.egg-info/ beside the sources it builds
    src = tmp_path_factory.mktemp("src") / "cycleseg"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "runs",
                                                             "__pycache__", ".*_cache"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), str(src)], capture_output=True, text=True, timeout=300, env=user_env())
    assert r.returncode == 0, r.stderr
    (whl,) = out.glob("cycleseg-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(the venv's cycleseg command, the environment to run it with)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=user_env())
    py = venv / "bin" / "python"
    target = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True, env=user_env()).stdout.strip())
    # a plain path entry: the dependencies are found there, but its .pth files (our editable install's
    # finder among them) are not run, so `cycleseg` can only come from the wheel
    (target / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                       capture_output=True, text=True, timeout=300, env=user_env())
    assert r.returncode == 0, r.stderr
    cycleseg = venv / "bin" / "cycleseg"
    assert cycleseg.is_file(), f"pip installed no cycleseg command: {r.stdout}{r.stderr}"
    return cycleseg, user_env(CYCLESEG_CACHE=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def research_folder(tmp_path) -> Path:
    for name in SHADOWS:
        (tmp_path / name).write_text(f"raise ImportError('the user\\'s own {name} was imported')\n")
    return tmp_path


def test_wheel_holds_only_the_package_and_its_shipped_files(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"cycleseg", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    shipped = {Path(n).name for n in names if n.startswith("cycleseg/search_spaces/")}
    assert {f.name for f in (REPO / "search_spaces").glob("*.yaml")} | {"schema.json"} <= shipped
    assert any(n.startswith("cycleseg/sweep/data/") and n.endswith(".csv") for n in names)
    assert "cycleseg/cli.py" in names
    assert not any(n.startswith(("cycleseg/tests", "cycleseg/benchmarks")) for n in names)


def test_installed_wheel_runs_from_a_folder_with_its_own_model_sweep_and_cli(installed, research_folder):
    cycleseg, env = installed
    assert run([str(cycleseg), "--version"], research_folder, env).stdout.startswith("cycleseg ")
    for space in sorted(f.stem for f in (REPO / "search_spaces").glob("*.yaml")):
        r = run([str(cycleseg), "sweep", space, "--dry-run"], research_folder, env)
        assert r.returncode == 0, f"{space}: {r.stdout}{r.stderr}"
    sizes = ["digits_train=12", "digits_val=4", "digits_test=4", "image_height=32", "image_width=32"]
    r = run([str(cycleseg), "debug", "--preset", "tiny", "--epochs", "1", *(a for s in sizes for a in ("--set", s)),
             "--device", "cpu", "--out", "runs/dbg"], research_folder, env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (research_folder / "runs" / "dbg" / "metrics.parquet").is_file()
    (research_folder / "one.yaml").write_text(textwrap.dedent("""
        base: {dataset: digits, preset: tiny, image_height: 32, image_width: 32, digits_train: 12, digits_val: 4,
               digits_test: 4, epochs: 1, method: partial}
    """))
    r = run([str(cycleseg), "sweep", "one.yaml", "--storage", "runs"], research_folder, env, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "1 trials: 1 completed" in r.stdout
