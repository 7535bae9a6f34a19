"""Bad input, whatever is typed: exit 0, or exit 2 with one line, no traceback and no file written.

The cases a reviewer found by hand (named), then a fuzz (hypothesis, derandomized so CI is
reproducible) over option values, names, paths and damaged files for every command. Nothing here
trains: ``debug`` is stopped where its checks end and its work would begin (the dataset's
preparation), which a valid input reaches and an invalid one must never reach.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cycleseg.cli import main
from cycleseg.model.config import FIELD_NAMES
from cycleseg.sweep.results import parquet as res
from tests.records import epoch_record

TINY_SPACE = {"base": {"dataset": "digits", "preset": "tiny", "image_height": 32, "image_width": 32,
                       "digits_train": 24, "digits_val": 8, "digits_test": 8, "epochs": 2}}
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class WouldTrain(Exception):
    """Raised where ``debug``'s checks end: the input was accepted."""


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty working folder as cwd, a cache outside it, and ``debug`` stopped before any work."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))

    def stop(*args, **kwargs):
        raise WouldTrain

    monkeypatch.setattr("cycleseg.model.debug.prepare_dataset", stop)
    return cwd


def files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def run(cwd: Path, *args: str) -> tuple[int, str, set[Path]]:
    """(exit code, output, files the command added under ``cwd``); WouldTrain counts as exit 0."""
    before = files(cwd)
    r = CliRunner().invoke(main, list(args))
    code = 0 if isinstance(r.exception, WouldTrain) else r.exit_code
    if r.exception is not None and not isinstance(r.exception, SystemExit | WouldTrain):
        raise AssertionError(f"{args}: {type(r.exception).__name__}: {r.exception}\n{r.output}") from r.exception
    return code, r.output, files(cwd) - before


def assert_clean_refusal(cwd: Path, *args: str) -> str:
    code, out, added = run(cwd, *args)
    assert code == 2, (args, code, out)
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1, (args, out)
    assert out.startswith("error: "), (args, out)
    assert not added, (args, added)
    return out


def assert_accepted_or_refused(cwd: Path, *args: str, writes: bool = False) -> None:
    """Exit 0, or a clean refusal; a command that ``writes`` nothing on success adds no file either way."""
    code, out, added = run(cwd, *args)
    assert code in (0, 2), (args, code, out)
    if code == 2:
        assert "Traceback" not in out and len(out.strip().splitlines()) == 1 and out.startswith("error: "), (args, out)
        assert not added, (args, added)
    elif not writes:
        assert not added, (args, added)


# --- the cases found by hand -----------------------------------------------------------------

def write_space(cwd: Path, extra: dict | None = None, name: str = "space.yaml") -> str:
    (cwd / name).write_text(yaml.safe_dump({**TINY_SPACE, **(extra or {})}))
    return name


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["debug", "--preset", "tiny", "--epochs", "1", "--seed", "-1"], "seed must be >= 0, got -1"),
        (["debug", "--set", "lr=inf"], "lr must be a finite number"),
        (["debug", "--set", "lr=nan"], "lr must be a finite number"),
        (["debug", "--out", ""], "--out is empty"),
        (["debug", "--preset", "tiny", "--out", "afile"], "is an existing file, not a folder"),
        (["debug", "--preset", "tiny", "--out", "afile/run"], "lies under the file"),
        (["debug", "--config", "binary.yaml"], "is not a text file"),
        (["debug", "--config", "broken/checkpoint"], "is a folder (it holds config.yaml); pass one YAML file"),
        (["debug", "--preset", "tiny", "--out", "broken", "--resume"], "is damaged"),
        (["sweep", "SPACE", "--name", "../escape", "--storage", "store"], "--name '../escape' is not a plain name"),
        (["sweep", "SPACE", "--name", "a/b", "--dry-run"], "is not a plain name"),
        (["sweep", "SPACE", "--dry-run", "--workers-per-trial", "0"], "--workers-per-trial must be >= 1"),
        (["sweep", "SPACE", "--dry-run", "--gpus-per-worker", "nan"], "--gpus-per-worker must be a number >= 0"),
        (["sweep", "SPACE", "--dry-run", "--max-concurrent", "0"], "--max-concurrent must be >= 1"),
        (["sweep", "SPACE", "--dry-run", "--storage", "afile"], "--storage 'afile' is an existing file"),
        (["sweep", "METRIC_SPACE", "--dry-run"], "unknown metric 'val_mIoU'"),
        (["sweep", "--resume", "--name", "damaged", "--storage", "store"], "sweep.json' is damaged"),
        (["report", "store/damaged", "-o", ""], "-o/--output is empty"),
        (["best-config", "store/damaged", "--metric", "test_miou"], "is a test metric"),
        (["report", "store/damaged", "-o", "rep"], "sweep.json' is damaged"),
        (["best-config", "store/damaged", "--where", "test_miou > 0.3"], "may name only config fields"),
        (["best-config", "store/damaged", "-o", ""], "-o/--output is empty"),
        (["best-config", "store/damaged", "-o", "/proc/x.yaml", "--trial", "t0"], "cannot write /proc/x.yaml"),
        (["sweep", "SPACE", "--dry-run", "--storage", ""], "--storage is empty"),
        (["sweep", "SPACE", "--dry-run", "--set", "device=cuda", "--gpus-per-worker", "0"], "--gpus-per-worker is 0"),
        (["sweep", "SPACE", "--dry-run", "--mlflow", "notauri"], "is not a tracking URI"),
        (["sweep", "SPACE", "--dry-run", "--address", "garbage address!"], "'garbage address!' is not host:port"),
        (["sweep", "SPACE", "--dry-run", "--address", "10.0.0.5:99999"], "is not host:port"),
        (["sweep", "demo", "--dry-run", "--set", "seed=7"], "would change nothing"),
    ],
)
def test_the_reviewers_cases_are_refused_in_one_line_writing_nothing(work, args, needle):
    (work / "afile").write_text("a file, not a folder")
    (work / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (work / "broken" / "checkpoint").mkdir(parents=True)
    (work / "broken" / "checkpoint" / "config.yaml").write_text(yaml.safe_dump({"preset": "tiny"}))
    (work / "broken" / "checkpoint" / "state.pt").write_bytes(b"PK\x03\x04 truncated")
    damaged = work / "store" / "damaged"
    (damaged / "trials").mkdir(parents=True)
    (damaged / "sweep.json").write_text('{"space_path": "x", "tri')
    _trial(damaged, "t0")
    space = write_space(work)
    metric_space = write_space(work, {"search": {"params": {"lr": {"distribution": "choice", "values": [0.1]}}},
                                      "scheduler": {"metric": "val_mIoU"}}, "metric.yaml")
    args = [{"SPACE": space, "METRIC_SPACE": metric_space}.get(a, a) for a in args]
    out = assert_clean_refusal(work, *args)
    assert needle in out, out
    assert not (work.parent / "escape").exists()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "space.yaml:1:1: search space holds no keys"),
        ("seeds: [0]\nbase: {preset: tiny}\nseeds: [1]\n", "space.yaml:3:1: search space is not valid YAML: key "
                                                            "'seeds' is given twice (first on line 1); keep one"),
        ("base:\n  preset: tiny\n  epochs: 1\n  epochs: 2\n", "space.yaml:4:3: search space is not valid YAML: key "
                                                            "'epochs' is given twice"),
        ("base:\n\tpreset: tiny\n", "space.yaml:2:1: search space is not valid YAML: found character '\\t'"),
        ("base: {preset: tiny\n", "space.yaml:2:1: search space is not valid YAML: expected ',' or '}'"),
    ],
)
@pytest.mark.parametrize("command", ["sweep", "debug"])
def test_empty_repeated_key_and_broken_yaml_files_are_refused_at_their_line(work, text, needle, command):
    (work / "space.yaml").write_text(text)
    if command == "debug":  # the same file as a --config: the same rule, named as a config file
        out = assert_clean_refusal(work, "debug", "--config", "space.yaml")
        assert needle.replace("search space", "config file") in out, out
    else:
        assert needle in assert_clean_refusal(work, "sweep", "space.yaml", "--dry-run")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_debug_on_cuda_without_a_gpu_is_refused_before_anything_is_written(work):
    assert "torch sees no GPU" in assert_clean_refusal(work, "debug", "--preset", "tiny", "--device", "cuda")


def test_a_bare_cycleseg_prints_its_help(work):
    code, out, added = run(work)
    assert code == 0 and out.startswith("Usage: ") and "Commands:" in out and not added


def test_a_bare_debug_on_a_cpu_machine_is_a_quick_sanity_run(work, monkeypatch):
    seen = {}

    def stop(cfg, **kwargs):
        seen["cfg"] = cfg
        raise WouldTrain

    monkeypatch.setattr("cycleseg.model.debug.prepare_dataset", stop)
    code, out, _ = run(work, "debug")
    assert code == 0 and "quick sanity run" in out
    assert (seen["cfg"].preset, seen["cfg"].epochs) == ("tiny", 2)


# --- the fuzz ---------------------------------------------------------------------------------

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
numberish = st.one_of(
    st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "inf", "-inf", "nan", "1e309", "true", "null", "[1, 2]", "{a: 1}", "0x10", "1_000", "'x'"]),
    text,
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), text)


@FUZZ
@given(key=keys, value=numberish)
def test_fuzz_sweep_set_values(work, key, value):
    space = write_space(work)
    assert_accepted_or_refused(work, "sweep", space, "--dry-run", "--set", f"{key}={value}")


@FUZZ
@given(workers=st.integers(-3, 4).map(str) | numberish, gpus=numberish, cpus=numberish, name=text)
def test_fuzz_sweep_options_and_names(work, workers, gpus, cpus, name):
    space = write_space(work)
    assert_accepted_or_refused(work, "sweep", space, "--dry-run", "--workers-per-trial", workers, "--gpus-per-worker",
                               gpus, "--cpus-per-worker", cpus, "--name", name, "--storage", "store")


@FUZZ
@given(doc=st.one_of(
    st.binary(max_size=200),
    st.dictionaries(st.sampled_from(["base", "grid", "seeds", "variants", "search", "scheduler", "gird"]),
                    st.one_of(numberish, st.lists(numberish, max_size=3),
                              st.dictionaries(keys, numberish, max_size=3)), max_size=4).map(
        lambda d: yaml.safe_dump(d).encode()),
))
def test_fuzz_space_files(work, doc):
    (work / "fuzz.yaml").write_bytes(doc)
    assert_accepted_or_refused(work, "sweep", "fuzz.yaml", "--dry-run")


@FUZZ
@given(doc=st.one_of(st.binary(max_size=200),
                     st.dictionaries(keys, numberish, max_size=4).map(lambda d: yaml.safe_dump(d).encode())),
       out=st.one_of(text, st.sampled_from(["", ".", "/", "afile", "afile/x", "/proc/x"])))
def test_fuzz_debug_config_files_and_out(work, doc, out):
    (work / "afile").write_text("x")
    (work / "cfg.yaml").write_bytes(doc)
    assert_accepted_or_refused(work, "debug", "--config", "cfg.yaml", "--out", out)


# --where is a pandas query the user runs on their own machine; no "**" (9**9**9 would just compute for ever)
queries = st.sampled_from(["labeled_fraction == 0.2", "seed > 0", "method == 'partial'", "nope > 1", "==", "((",
                           "labeled_fraction ==", "`x`", "@y", "seed.__class__"]) | st.text(
    alphabet=string.ascii_letters + string.digits + " _=<>!.'\"()", max_size=16)


@FUZZ
@given(damage=st.sampled_from(["truncate", "garbage", "empty", "not-parquet-suffix"]), metric=text | st.sampled_from(
    ["val_miou", "test_miou", "best_val_miou", "final_test_miou", "method", "seed"]), where=queries,
       out=st.sampled_from(["best.yaml", "best/", "", "afile/x"]))
def test_fuzz_results_files_for_report_and_best_config(work, damage, metric, where, out):
    sweep = work / "store" / "s"
    if not (sweep / "trials").is_dir():
        for i in range(2):
            _trial(sweep, f"t{i}")
        (work / "afile").write_text("x")
    victim = sweep / "trials" / "t1.parquet"
    good = (sweep / "trials" / "t0.parquet").read_bytes()
    victim.write_bytes({"truncate": good[: len(good) // 2], "garbage": os.urandom(64), "empty": b"",
                        "not-parquet-suffix": good}[damage])
    assert_accepted_or_refused(work, "best-config", str(sweep), "--metric", metric, "--where", where, "-o", out,
                               writes=True)
    assert_accepted_or_refused(work, "report", str(sweep), "-o", "rep", "--no-samples", writes=True)


def _trial(sweep: Path, tid: str) -> None:
    from cycleseg.model.resolve import resolve_config

    cfg = resolve_config({**TINY_SPACE["base"], "seed": int(tid[1:])})
    hist = [epoch_record(e, 0.1 * e) for e in (1, 2)]
    versions = {"cycleseg_version": None, "torch_version": "2", "ray_version": "2", "git_commit": None}
    row = res.trial_row(sweep=sweep.name, trial_id=tid, cfg=cfg, variant=None, history=hist, error=None,
                        wall_seconds=1.0, gpus=0.0, checkpoint_path=None, versions=versions)
    res.write_trial(sweep, row, hist)


def test_names_are_names():
    from cycleseg.model.errors import UserError
    from cycleseg.model.io import check_name

    for ok in ("demo", "table1-voc", "a.b_c", "X" * 128):
        assert check_name(ok, "--name") == ok
    for bad in ("", ".", "..", "../x", "a/b", "/abs", "~", "-rf", ".hidden", "a b", "é", "X" * 129, "a\nb"):
        with pytest.raises(UserError, match="is not a plain name"):
            check_name(bad, "--name")
