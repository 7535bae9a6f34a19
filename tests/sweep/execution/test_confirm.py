"""confirm: each cell's winner (chosen on val, semi-supervised only) re-run on seeds its search never used,
beside partial at the same dataset, fraction and budget; a used seed is refused; the generated space and
confirm.json; the report cites it. The end-to-end test runs a real search and its confirmation on Ray."""

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from cycleseg.cli import main
from cycleseg.model.config import DEFAULTS
from cycleseg.model.errors import UserError
from cycleseg.model.resolve import resolve_config
from cycleseg.model.trainer import epoch_steps
from cycleseg.sweep.execution import confirm as cf
from cycleseg.sweep.execution.runner import SweepOutcome
from cycleseg.sweep.planning.plan import PLAN_FILE, Plan, read_plan
from cycleseg.sweep.planning.space import load_space
from cycleseg.sweep.results import parquet as res
from tests.records import epoch_record

BASE = {"dataset": "digits", "preset": "tiny", "image_height": 32, "image_width": 32, "digits_train": 24,
        "digits_val": 8, "digits_test": 8, "device": "cpu"}
VERSIONS = {"cycleseg_version": None, "torch_version": "2", "ray_version": "2", "git_commit": None}
SEARCH = textwrap.dedent("""
    base: {dataset: digits, preset: tiny, image_height: 32, image_width: 32, digits_train: 24, digits_val: 8,
           digits_test: 8, device: cpu, lambda_2: 0.3}
    grid: {method: [partial, cyclegan], labeled_fraction: [0.1, 0.2]}
    seeds: [0, 1]
    search:
      algorithm: random
      num_samples: 2
      params:
        lambda_2: {distribution: choice, values: [0.01, 0.5]}
        epochs: {distribution: choice, values: [1, 2]}
    """)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))


def add_trial(sweep_dir: Path, tid: str, val: float, *, variant: str | None = None, error: str | None = None,
              **fields) -> dict:
    """One finished trial whose val mIoU is ``val`` at its last epoch (test = 1 − val: a choice on test would
    pick the other configuration)."""
    cfg = resolve_config({**BASE, **fields})
    hist = [epoch_record(e, val * e / cfg.epochs) for e in range(1, cfg.epochs + 1)]
    row = res.trial_row(sweep=sweep_dir.name, trial_id=tid, cfg=cfg, variant=variant, history=hist, error=error,
                        wall_seconds=1.0, gpus=0.0, checkpoint_path=None, versions=VERSIONS)
    res.write_trial(sweep_dir, row, hist)
    return cfg.to_dict()


@pytest.fixture
def search(tmp_path):
    """A λ2 × epochs search per grid cell (method × fraction), seeds 0 and 1, its plan as a sweep writes it.

    cyclegan 10 %: (λ2 0.01, 2 epochs) wins on val; 20 %: (λ2 0.5, 1 epoch). partial scores higher than
    both but is the baseline, never a candidate; a failed trial used seed 3."""
    (tmp_path / "space.yaml").write_text(SEARCH)
    d = tmp_path / "lambdas"
    d.mkdir()
    (d / PLAN_FILE).write_text(Plan.build(load_space(tmp_path / "space.yaml"), {}).to_json())
    scores = {(0.1, 0.01, 2): 0.6, (0.1, 0.5, 1): 0.4, (0.2, 0.01, 2): 0.3, (0.2, 0.5, 1): 0.7}
    for (frac, lam, epochs), val in scores.items():
        for seed in (0, 1):
            add_trial(d, f"c{frac}_{lam}_{seed}", val + seed / 100, labeled_fraction=frac, lambda_2=lam,
                      epochs=epochs, seed=seed)
            add_trial(d, f"p{frac}_{lam}_{seed}", 0.9, method="partial", labeled_fraction=frac, lambda_2=lam,
                      epochs=epochs, seed=seed)
    add_trial(d, "failed", 0.99, labeled_fraction=0.1, lambda_2=0.5, epochs=1, seed=3, error="RuntimeError: x")
    return d


@pytest.fixture
def grid(tmp_path):
    """A grid sweep (no plan): partial, full and two cyclegan variants at 20 %; no_label_cycle wins on val."""
    d = tmp_path / "ablation"
    for seed in (0, 1, 2):
        add_trial(d, f"proposed{seed}", 0.5, variant="proposed", epochs=2, seed=seed)
        add_trial(d, f"nolc{seed}", 0.6, variant="no_label_cycle", lambda_2=0.0, epochs=2, seed=seed)
        add_trial(d, f"partial{seed}", 0.8, method="partial", epochs=2, seed=seed)
        add_trial(d, f"full{seed}", 0.95, method="full", epochs=2, seed=seed)
    return d


def invoke(*args):
    return CliRunner().invoke(main, ["confirm", *map(str, args)], catch_exceptions=False)


def arms(space_path) -> dict[str, list[dict]]:
    """The generated space's trials by variant, each a resolved config."""
    out: dict[str, list[dict]] = {}
    for spec in load_space(space_path).expand():
        out.setdefault(spec.variant, []).append(spec.cfg.to_dict())
    return out


def generated(sweep_dir, tmp_path, *, with_default=False, seeds="3") -> tuple[list[cf.Pairing], Path]:
    df = res.read_sweeps([sweep_dir]).trials
    plan = read_plan(sweep_dir, "")
    pairings = cf.pair_winners(df, plan, with_default=with_default)
    fresh = cf.fresh_seeds(seeds, cf.used_seeds(df, plan), str(sweep_dir))
    path = tmp_path / "out" / cf.SPACE_FILE
    path.parent.mkdir(exist_ok=True)
    path.write_text(cf.space_text(str(sweep_dir), sweep_dir.name, pairings, fresh))
    return pairings, path


@pytest.fixture
def fake_run(monkeypatch):
    """run_sweep recorded instead of run: what confirm hands the runner, and the space file as it was then."""
    from cycleseg.sweep.execution import runner

    calls = []

    def run_sweep(space, **kw):
        calls.append({"space": space, "text": Path(space).read_text(), **kw})
        return None if kw.get("dry_run") else SweepOutcome(runner.locations(kw["storage"], kw["name"])[1], 0)

    monkeypatch.setattr(cf, "run_sweep", run_sweep)
    return calls


# ----------------------------------------------------------------------------------------------
# Seeds


@pytest.mark.parametrize(("seeds", "needle"), [
    ("1,5", "--seeds 1: it was used by trials of"),
    ("0,1,7", "--seeds 0, 1: they were used by trials of"),
    ("1", "needs at least 2 seeds"),
    ("7,", "needs at least 2 seeds"),
    ("4,4", "lists a seed twice"),
    ("-1,4", "seed must be >= 0"),
    ("five", "is neither a count"),
    ("4,x", "whole numbers separated by commas"),
])
def test_a_seed_the_search_used_or_a_bad_seed_list_is_refused_and_nothing_written(search, tmp_path, seeds, needle):
    r = invoke(search, "--seeds", seeds, "--storage", tmp_path / "runs", "--name", "c")
    assert r.exit_code == 2, r.output
    assert needle in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "runs").exists()
    if "used by" in needle:  # names the sweep's seeds and a fix that works
        assert "(its seeds: 0, 1, 3)" in r.output and "--seeds 2,4" in r.output


def test_a_count_takes_the_smallest_seeds_no_trial_used(search):
    df = res.read_sweeps([search]).trials
    used = cf.used_seeds(df, read_plan(search, ""))
    assert used == {0, 1, 3}  # seed 3: a failed trial's, still used
    assert cf.fresh_seeds("3", used, "x") == [2, 4, 5]
    assert cf.fresh_seeds("100, 101", used, "x") == [100, 101]


# ----------------------------------------------------------------------------------------------
# Winners and their baselines


def test_each_search_cells_winner_is_paired_with_partial_at_its_dataset_fraction_and_budget(search, tmp_path):
    pairings, path = generated(search, tmp_path)
    # partial's cells, better on val, are baselines: never candidates
    assert [p.winner.cell for p in pairings] == ["labeled_fraction=0.1", "labeled_fraction=0.2"]
    assert [p.searched for p in pairings] == [{"lambda_2": 0.01, "epochs": 2}, {"lambda_2": 0.5, "epochs": 1}]
    assert [p.from_winner for p in pairings] == [{"epochs": 2}, {"epochs": 1}]
    got = arms(path)
    assert set(got) == {"winner@labeled-fraction-0p1", "partial@labeled-fraction-0p1",
                        "winner@labeled-fraction-0p2", "partial@labeled-fraction-0p2"}
    for frac, lam, epochs in ((0.1, 0.01, 2), (0.2, 0.5, 1)):
        tag = f"labeled-fraction-{str(frac).replace('.', 'p')}"
        winner, partial = got[f"winner@{tag}"], got[f"partial@{tag}"]
        assert [c["seed"] for c in winner] == [c["seed"] for c in partial] == [2, 4, 5]
        for w, p in zip(winner, partial, strict=True):
            assert (w["method"], w["lambda_2"], w["epochs"]) == ("cyclegan", lam, epochs)
            assert p["method"] == "partial"
            for k in ("dataset", "labeled_fraction", "epochs", "batch_size", "digits_train", "image_height"):
                assert w[k] == p[k], k
            # the searched λ2 is the default, not the base's 0.3 that the search replaced
            assert p["lambda_2"] == DEFAULTS["lambda_2"]
            # equal budgets: the same optimizer steps
            cw, cp = resolve_config(w), resolve_config(p)
            assert epoch_steps(cw, cw.digits_train) * cw.epochs == epoch_steps(cp, cp.digits_train) * cp.epochs
        # the winner arm is the winner's configuration
        won = pd.read_parquet(search / "trials").query(f"method == 'cyclegan' and labeled_fraction == {frac} and "
                                                       f"lambda_2 == {lam}")
        assert {resolve_config(c).hash(exclude=("seed",)) for c in winner} == set(won["group_hash"])


def test_with_default_adds_the_cell_at_its_default_searched_fields(search, tmp_path):
    pairings, path = generated(search, tmp_path, with_default=True)
    got = arms(path)
    assert [p.default for p in pairings] == ["default@labeled-fraction-0p1", "default@labeled-fraction-0p2"]
    d = got["default@labeled-fraction-0p2"]
    assert [c["seed"] for c in d] == [2, 4, 5]
    # the searched λ2 at its default (the paper's), the budget the winner's, the method the winner's
    assert all((c["method"], c["lambda_2"], c["epochs"]) == ("cyclegan", DEFAULTS["lambda_2"], 1) for c in d)
    assert len(load_space(path).expand()) == 6 * 3  # 3 arms × 2 cells × 3 fresh seeds


def test_a_grid_sweeps_cell_is_dataset_and_fraction_its_choice_what_varied(grid, tmp_path):
    pairings, path = generated(grid, tmp_path, with_default=True, seeds="2")
    (p,) = pairings
    # full and partial score higher but are baselines; no_label_cycle beats proposed
    assert p.name == "winner@digits_0p2" and p.searched == {"lambda_2": 0.0} and p.from_winner == {}
    got = arms(path)
    assert set(got) == {"winner@digits_0p2", "partial@digits_0p2", "default@digits_0p2"}
    assert [c["seed"] for c in got["partial@digits_0p2"]] == [3, 4]
    assert all(c["lambda_2"] == 0.0 for c in got["winner@digits_0p2"])
    assert all(c["lambda_2"] == DEFAULTS["lambda_2"] and c["method"] == "cyclegan" for c in got["default@digits_0p2"])
    assert all(c["method"] == "partial" and c["epochs"] == 2 for c in got["partial@digits_0p2"])


def test_no_default_arm_when_the_winner_is_the_default(grid, tmp_path):
    for seed in (0, 1, 2):  # proposed (the defaults) now wins
        add_trial(grid, f"proposed{seed}", 0.7, variant="proposed", epochs=2, seed=seed)
    (p,), path = generated(grid, tmp_path, with_default=True)
    assert p.default is None and set(arms(path)) == {"winner@digits_0p2", "partial@digits_0p2"}


def test_only_baselines_completed_is_refused(tmp_path):
    d = tmp_path / "base"
    add_trial(d, "p0", 0.5, method="partial", seed=0)
    r = invoke(d, "--storage", tmp_path / "runs")
    assert r.exit_code == 2 and "no completed semi-supervised trial" in r.output


# ----------------------------------------------------------------------------------------------
# The command: the space and confirm.json it writes, what it hands run_sweep


def test_confirm_writes_its_space_and_provenance_then_runs_them_as_a_sweep(search, tmp_path, fake_run):
    r = invoke(search, "--seeds", "2", "--storage", tmp_path / "runs", "--name", "conf", "--max-concurrent", "2")
    assert r.exit_code == 0, r.output
    sweep_dir = tmp_path / "runs" / "conf"
    (call,) = fake_run
    assert call["space"] == str(sweep_dir / cf.SPACE_FILE) and call["name"] == "conf" and call["max_concurrent"] == 2
    assert call["text"] == (sweep_dir / cf.SPACE_FILE).read_text()
    space = yaml.safe_load(call["text"])
    assert space["seeds"] == [2, 4] and "lambdas" in space["description"]
    assert space["base"]["dataset"] == "digits" and "method" not in space["base"]
    assert space["variants"]["partial@labeled-fraction-0p1"]["method"] == "partial"
    info = json.loads((sweep_dir / cf.PROVENANCE_FILE).read_text())
    assert info["format"] == cf.FORMAT and info["source"] == str(search) and info["source_sweep"] == "lambdas"
    assert info["fresh_seeds"] == [2, 4] and info["metric"] == "val_miou" and info["space"] == cf.SPACE_FILE
    cell = info["cells"][0]
    assert set(cell) == {"cell", "winner", "baseline", "default", "group_hash", "trial_ids", "search_seeds",
                         "searched", "baseline_from_winner", "value", "std", "n", "caveats"}
    assert cell["winner"] == "winner@labeled-fraction-0p1" and cell["baseline"] == "partial@labeled-fraction-0p1"
    assert cell["default"] is None and cell["searched"] == {"lambda_2": 0.01, "epochs": 2}
    assert cell["search_seeds"] == [0, 1] and sorted(cell["trial_ids"]) == ["c0.1_0.01_0", "c0.1_0.01_1"]
    assert cell["baseline_from_winner"] == {"epochs": 2} and cell["n"] == 2
    assert cell["value"] == pytest.approx(0.605)
    won = pd.read_parquet(search / "trials").set_index("trial_id")
    assert cell["group_hash"] == won.loc["c0.1_0.01_0", "group_hash"]
    # the report cites it
    note = cf.confirmation_note(sweep_dir)
    assert "confirms the winners of sweep 'lambdas'" in note and "seeds 0, 1" in note and "fresh seeds 2, 4" in note
    # a second confirmation under that name is refused once it started (sweep.json), and nothing is overwritten
    (sweep_dir / PLAN_FILE).write_text(Plan(str(sweep_dir / cf.SPACE_FILE), {}, 1, [], [], [2, 4]).to_json())
    before = (sweep_dir / cf.PROVENANCE_FILE).read_bytes()
    r = invoke(search, "--seeds", "5", "--storage", tmp_path / "runs", "--name", "conf")
    assert r.exit_code == 2 and "confirm --resume --name conf" in r.output
    assert (sweep_dir / cf.PROVENANCE_FILE).read_bytes() == before and len(fake_run) == 1


def test_resume_runs_the_stored_space_and_refuses_other_arms(search, tmp_path, fake_run):
    assert invoke(search, "--seeds", "2", "--storage", tmp_path / "runs", "--name", "conf").exit_code == 0
    sweep_dir = tmp_path / "runs" / "conf"
    r = invoke("--resume", "--storage", tmp_path / "runs", "--name", "conf")
    assert r.exit_code == 0, r.output
    assert fake_run[-1]["resume"] is True and fake_run[-1]["space"] == str(sweep_dir / cf.SPACE_FILE)
    assert invoke(search, "--resume", "--seeds", "2", "--storage", tmp_path / "runs", "--name", "conf").exit_code == 0
    r = invoke(search, "--resume", "--seeds", "3", "--storage", tmp_path / "runs", "--name", "conf")
    assert r.exit_code == 2 and "differ from the ones confirmation 'conf' started with" in r.output
    r = invoke("--resume", "--seeds", "3", "--storage", tmp_path / "runs", "--name", "conf")
    assert r.exit_code == 2 and "drop --seeds" in r.output
    r = invoke("--resume", "--storage", tmp_path / "runs", "--name", "other")
    assert r.exit_code == 2 and "no confirmation 'other'" in r.output
    assert len(fake_run) == 3


def test_resume_reads_the_space_stored_with_the_confirmation_wherever_the_plan_points(search, tmp_path):
    """With an object-store --storage the run read a temporary copy of confirm.yaml: the plan's path is gone."""
    _, path = generated(search, tmp_path, seeds="2")
    sweep_dir = tmp_path / "runs" / "conf"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / cf.SPACE_FILE).write_text(path.read_text())
    plan = Plan.from_space(path, {})
    plan.space_path = str(tmp_path / "gone" / cf.SPACE_FILE)
    (sweep_dir / PLAN_FILE).write_text(plan.to_json())
    r = invoke("--resume", "--dry-run", "--storage", tmp_path / "runs", "--name", "conf")
    assert r.exit_code == 0, r.output
    assert "8 trials" in r.output and "winner@labeled-fraction-0p2" in r.output


def test_a_run_that_never_started_leaves_nothing(search, tmp_path, monkeypatch):
    def refuse(space, **kw):
        raise UserError("cannot reach the Ray cluster at 'x'")

    monkeypatch.setattr(cf, "run_sweep", refuse)
    r = invoke(search, "--storage", tmp_path / "runs", "--name", "conf")
    assert r.exit_code == 2 and "cannot reach" in r.output
    assert not (tmp_path / "runs").exists()


def test_dry_run_prints_the_space_and_the_trials_and_writes_nothing(search, tmp_path):
    r = invoke(search, "--seeds", "2", "--storage", tmp_path / "runs", "--name", "conf", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "winner@labeled-fraction-0p1:" in r.output and "8 trials" in r.output
    assert not (tmp_path / "runs").exists()


def test_the_report_says_where_the_winners_were_chosen(search, tmp_path, fake_run):
    from cycleseg.sweep.report import build_report

    assert invoke(search, "--seeds", "2", "--storage", tmp_path / "runs", "--name", "conf").exit_code == 0
    sweep_dir = tmp_path / "runs" / "conf"
    add_trial(sweep_dir, "w2", 0.5, variant="winner@labeled-fraction-0p1", labeled_fraction=0.1, lambda_2=0.01,
              epochs=2, seed=2)
    add_trial(sweep_dir, "p2", 0.4, variant="partial@labeled-fraction-0p1", method="partial", labeled_fraction=0.1,
              epochs=2, seed=2)
    index = build_report([str(sweep_dir)], no_samples=True)
    assert "confirms the winners of sweep 'lambdas'" in index.read_text()


# ----------------------------------------------------------------------------------------------
# End to end, on Ray


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_real_search_confirmed_on_fresh_seeds(cluster, tmp_path):
    """A tiny λ2 search (2 cells × 2 samples × seed 0), then its confirmation through the CLI on 2 fresh seeds."""
    p = tmp_path / "search.yaml"
    p.write_text(textwrap.dedent("""
        base: {dataset: digits, preset: tiny, image_height: 16, image_width: 16, digits_train: 20, digits_val: 8,
               digits_test: 8, epochs: 1, device: cpu}
        grid: {labeled_fraction: [0.2, 0.5]}
        seeds: [0]
        search:
          num_samples: 2
          params: {lambda_2: {distribution: choice, values: [0.01, 0.5]}}
          points_to_evaluate: [{lambda_2: 0.01}, {lambda_2: 0.5}]
        """))
    runs = tmp_path / "runs"
    opts = ["--storage", runs, "--gpus-per-worker", "0"]
    r = CliRunner().invoke(main, ["sweep", str(p), "--name", "search", *map(str, opts)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = invoke(runs / "search", "--seeds", "2", "--name", "conf", *opts)
    assert r.exit_code == 0, r.output
    search = pd.read_parquet(runs / "search" / "trials")
    conf = pd.read_parquet(runs / "conf" / "trials")
    assert set(conf["seed"]).isdisjoint(search["seed"]) and set(conf["seed"]) == {1, 2}
    assert (conf["status"] == "completed").all()
    for frac in (0.2, 0.5):
        cell = conf[conf["labeled_fraction"] == frac]
        tag = f"labeled-fraction-{str(frac).replace('.', 'p')}"
        by = {(v, s): row for v, s, row in zip(cell["variant"], cell["seed"], cell.itertuples(), strict=True)}
        assert set(by) == {(f"{arm}@{tag}", s) for arm in ("winner", "partial") for s in (1, 2)}
        for s in (1, 2):
            w, b = by[f"winner@{tag}", s], by[f"partial@{tag}", s]
            assert (w.method, b.method) == ("cyclegan", "partial") and w.steps == b.steps > 0
    info = json.loads((runs / "conf" / cf.PROVENANCE_FILE).read_text())
    assert info["fresh_seeds"] == [1, 2] and [c["search_seeds"] for c in info["cells"]] == [[0], [0]]


def test_the_baseline_keeps_the_winners_networks_and_resets_only_the_methods_own_settings(tmp_path):
    d = tmp_path / "wide"
    for seed in (0, 1):  # the wider G_IS with straight-through D_S input wins on val
        add_trial(d, f"plain{seed}", 0.5, variant="proposed", epochs=2, seed=seed)
        add_trial(d, f"wide{seed}", 0.6, variant="wide", epochs=2, seed=seed, ngf=12, d_s_input="straight_through")
        add_trial(d, f"p{seed}", 0.4, method="partial", epochs=2, seed=seed)
    (p,), path = generated(d, tmp_path, with_default=True, seeds="2")
    assert p.searched == {"d_s_input": "straight_through", "ngf": 12} and p.from_winner == {"ngf": 12}
    got = {arm: {(c["method"], c["ngf"], c["d_s_input"]) for c in cfgs} for arm, cfgs in arms(path).items()}
    assert got["partial@digits_0p2"] == {("partial", 12, "softmax")}  # the same G_IS; D_S input is not partial's
    assert got["default@digits_0p2"] == {("cyclegan", 12, "softmax")}


def test_a_paper_code_winner_is_rebuilt_exactly_and_meets_the_paper_code_partial(tmp_path):
    cfg = resolve_config({**BASE, "recipe": "paper-code", "lambda_4": 1.0}).to_dict()  # the code with the paper's λ4
    ov = cf._overrides(cfg)
    assert ov["lambda_4"] == 1.0 and ov["recipe"] == "paper-code" and "lambda_5" not in ov  # λ5 comes from the recipe
    assert resolve_config({**ov, "seed": cfg["seed"]}).to_dict() == cfg
    d = tmp_path / "code"
    for seed in (0, 1):
        add_trial(d, f"c{seed}", 0.6, variant="paper_code", recipe="paper-code", epochs=2, seed=seed)
        add_trial(d, f"pc{seed}", 0.4, method="partial", recipe="paper-code", epochs=2, seed=seed)
    (_,), path = generated(d, tmp_path, seeds="2")
    assert all((c["recipe"], c["beta1"]) == ("paper-code", 0.9) for c in arms(path)["partial@digits_0p2"])


def test_set_changes_only_where_the_arms_run(search, tmp_path, fake_run):
    r = invoke(search, "--seeds", "2", "--storage", tmp_path / "runs", "--set", "lambda_2=0.2")
    assert r.exit_code == 2 and "--set lambda_2: the arms are the configurations the search chose" in r.output
    assert not (tmp_path / "runs").exists()
    r = invoke(search, "--seeds", "2", "--storage", tmp_path / "runs", "--set", "cache_dir=/elsewhere")
    assert r.exit_code == 0, r.output
    assert fake_run[-1]["sets"] == ["cache_dir=/elsewhere"]
