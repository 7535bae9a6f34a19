"""`cycleseg debug` as a user runs it: files on success; one line and exit 2 on bad input."""

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

import tests.faults  # noqa: F401  (registers the fault_* methods)
from cycleseg.cli import main

TINY = ["--dataset", "digits", "--preset", "tiny", "--set", "digits_train=24", "--set", "digits_val=8",
        "--set", "digits_test=8", "--set", "image_height=32", "--set", "image_width=32", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))


def _run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_debug_writes_config_metrics_checkpoint_and_grid(tmp_path):
    out = tmp_path / "run"
    r = _run("debug", *TINY, "--method", "cyclegan", "--labeled-fraction", "0.25", "--epochs", "2", "--out", str(out))
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["method"] == "cyclegan" and cfg["labeled_fraction"] == 0.25 and cfg["ngf"] == 8
    df = pd.read_parquet(out / "metrics.parquet")
    assert list(df["epoch"]) == [1, 2] and df[["val_miou", "test_miou"]].stack().between(0, 1).all()
    assert list(df["steps"]) == [4, 8]  # ceil(max(6 labeled, 18 unlabeled) / 5) per epoch
    best = df.loc[df["val_miou"].idxmax()]  # select=best_val: a background-only run is said to be one, as expected
    one_class = bool(sum(v >= 0.01 for v in best["val_class_iou"]) <= 1)
    assert ("predicts essentially one class" in r.output) == one_class == ("the path works" in r.output)
    assert (out / "checkpoint" / "state.pt").is_file()
    with Image.open(out / "samples.png") as im:
        w, h = im.size  # 4 columns (image, truth, prediction, G_SI) × 4 rows of 200-px cells
        assert w >= 4 * 190 and h >= 4 * 190
    # the written config runs unchanged, and an existing run is not overwritten by accident
    r = _run("debug", "--config", str(out / "config.yaml"), "--out", str(out))
    assert r.exit_code == 2 and "already holds a run" in r.output
    r = _run("debug", "--config", str(out / "config.yaml"), "--epochs", "3", "--resume", "--out", str(out))
    assert r.exit_code == 2 and "epochs" in r.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--dataset", "digts"], "did you mean 'digits'"),
        (["--method", "cyclgan"], "did you mean 'cyclegan'"),
        (["--preset", "huge"], "preset must be one of: paper, small or tiny, got 'huge'"),
        (["--set", "lambda2=0"], "did you mean 'lambda_2'"),
        (["--labeled-fraction", "0"], "labeled_fraction must be > 0"),
        (["--set", "lambda_4=-1"], "lambda_4 must be >= 0"),
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--dataset", "voc"], "data_root"),
        (["--config", "nope.yaml"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, needle):
    out = tmp_path / "never"
    r = CliRunner().invoke(main, ["debug", *args, "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not out.exists()


def test_debug_resume_keeps_the_earlier_epochs_in_metrics(tmp_path):
    out = tmp_path / "run"
    args = ["debug", *TINY, "--epochs", "2", "--method", "fault_crash_2", "--out", str(out)]
    r = CliRunner().invoke(main, args)
    assert isinstance(r.exception, RuntimeError)  # crashed in epoch 2, after epoch 1's checkpoint
    assert list(pd.read_parquet(out / "metrics.parquet")["epoch"]) == [1]
    r = _run(*args, "--resume")
    assert r.exit_code == 0, r.output
    assert list(pd.read_parquet(out / "metrics.parquet")["epoch"]) == [1, 2]


def test_debug_help_points_to_the_config_docs_and_names_every_gan_lever():
    from click.testing import CliRunner

    from cycleseg.cli import main
    from cycleseg.model.config import GAN_FIELDS

    out = " ".join(CliRunner().invoke(main, ["debug", "--help"]).output.split())
    assert "docs/config.md" in out
    listed = out.split("the GAN levers (", 1)[1].split(")", 1)[0].split(", ")
    assert listed == ["recipe", *GAN_FIELDS]  # config.py owns the list; the help must follow it


def test_debug_resume_with_one_changed_option_names_only_that_one(tmp_path):
    out = tmp_path / "run"
    assert _run("debug", *TINY, "--epochs", "1", "--out", str(out)).exit_code == 0
    r = _run("debug", "--out", str(out), "--resume", "--epochs", "3")
    assert r.exit_code == 2 and "made with other settings (epochs)" in r.output


def test_ctrl_c_in_debug_says_what_was_kept_and_how_to_go_on(tmp_path, monkeypatch):
    from cycleseg.model import debug

    out = tmp_path / "run"
    assert _run("debug", *TINY, "--epochs", "1", "--out", str(out)).exit_code == 0

    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(debug, "debug_run", interrupted)
    r = CliRunner().invoke(main, ["debug", "--out", str(out), "--resume"])
    assert r.exit_code == 130 and "Traceback" not in r.output
    assert f"the 1 finished epoch(s) are kept in {out / 'checkpoint'}; continue with: cycleseg debug --out {out} " \
           "--resume" in r.output
    r = CliRunner().invoke(main, ["debug", *TINY, "--out", str(tmp_path / "fresh")])
    assert r.exit_code == 130 and "before the first epoch finished: nothing kept" in r.output
