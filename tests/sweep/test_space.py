"""Search-space files: expansion counts and precedence, shipped spaces, and bad YAML → exit 2 naming the field."""

import textwrap

import pytest
from click.testing import CliRunner

from cli import main
from model.config import resolve_config
from model.errors import UserError
from sweep.space import SHIPPED_DIR, load_space, resolve_space_path

TINY_BASE = """
base:
  dataset: digits
  preset: tiny
  image_height: 32
  image_width: 32
  digits_train: 24
  digits_val: 8
  epochs: 2
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))


def write(tmp_path, text, name="space.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def tiny(extra=""):
    """The tiny base plus ``extra`` YAML (dedented)."""
    return TINY_BASE + textwrap.dedent(extra)


def test_demo_is_two_methods_by_two_fractions_by_two_seeds():
    specs = load_space(SHIPPED_DIR / "demo.yaml").expand()
    assert len(specs) == 8
    combos = {(s.cfg.method, s.cfg.labeled_fraction, s.cfg.seed) for s in specs}
    assert combos == {(m, f, s) for m in ("partial", "cyclegan") for f in (0.1, 0.2) for s in (0, 1)}
    assert all(s.cfg.dataset == "digits" and s.cfg.preset == "tiny" and s.cfg.ngf == 8 for s in specs)
    # seeds outermost: the first pass covers every configuration once
    assert [s.cfg.seed for s in specs] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_table1_runs_full_once_per_seed_and_takes_the_dataset_from_set():
    space = load_space("table1")  # a shipped space by name
    specs = space.expand({"dataset": "cityscapes"})
    assert len(specs) == 3 * (1 + 3 * 4)  # full collapses to labeled_fraction 1.0: 39, not 48
    full = [s.cfg for s in specs if s.cfg.method == "full"]
    assert sorted(c.seed for c in full) == [0, 1, 2] and {c.labeled_fraction for c in full} == {1.0}
    assert {s.cfg.dataset for s in specs} == {"cityscapes"}
    assert {(s.cfg.ngf, s.cfg.n_blocks, s.cfg.epochs) for s in specs} == {(64, 9, 400)}
    assert len({s.cfg.hash() for s in specs}) == len(specs)


def test_ablation_zeroes_one_lambda_per_variant():
    specs = load_space("ablation").expand()
    assert len(specs) == 15
    by_variant = {s.variant: s.cfg for s in specs if s.cfg.seed == 0}
    lambdas = {v: (c.lambda_2, c.lambda_3, c.lambda_4, c.lambda_5) for v, c in by_variant.items()}
    assert lambdas == {
        "proposed": (0.05, 1.0, 1.0, 1.0),
        "no_label_cycle": (0.0, 1.0, 1.0, 1.0),
        "no_image_cycle": (0.05, 0.0, 1.0, 1.0),
        "no_label_disc": (0.05, 1.0, 0.0, 1.0),
        "no_image_disc": (0.05, 1.0, 1.0, 0.0),
    }
    assert all(c.method == "cyclegan" and c.labeled_fraction == 0.2 for c in by_variant.values())


def test_lambdas_searches_every_lambda_log_uniformly_from_the_papers_values():
    space = load_space("lambdas")
    assert space.search is not None and space.scheduler is not None
    assert [p.name for p in space.search.params] == ["lambda_1", "lambda_2", "lambda_3", "lambda_4", "lambda_5"]
    assert {p.distribution for p in space.search.params} == {"loguniform"}
    assert space.search.points_to_evaluate[0] == {"lambda_1": 1.0, "lambda_2": 0.05, "lambda_3": 1.0,
                                                  "lambda_4": 1.0, "lambda_5": 1.0}
    assert len(space.cells()) == 4 and space.num_trials() == 4 * 20 * 1
    with pytest.raises(ValueError):
        space.expand()  # trials of a search are sampled while it runs


def test_precedence_base_then_set_then_grid_then_variant(tmp_path):
    p = write(tmp_path, TINY_BASE + "  lambda_2: 0.5\n" + textwrap.dedent("""
    grid:
      lambda_3: [0.25, 0.75]
    variants:
      a: {}
      b: {lambda_3: 0.0}
    seeds: [3]
    """))
    space = load_space(p)
    specs = space.expand({"lambda_2": 0.125, "lambda_3": 9.0, "epochs": 1})
    got = sorted((s.variant, s.cfg.lambda_2, s.cfg.lambda_3, s.cfg.epochs, s.cfg.seed) for s in specs)
    # --set beats base (λ2, epochs), the grid beats --set (λ3), a variant beats the grid; b's two
    # grid cells resolve to the same config and run once
    assert got == [("a", 0.125, 0.25, 1, 3), ("a", 0.125, 0.75, 1, 3), ("b", 0.125, 0.0, 1, 3)]
    assert space.shadowed({"lambda_2": 0.1, "lambda_3": 9.0, "seed": 1}) == ["lambda_3", "seed"]


def test_without_seeds_the_base_seed_is_the_one_replicate(tmp_path):
    space = load_space(write(tmp_path, TINY_BASE + "\n  seed: 7\n"))
    assert [s.cfg.seed for s in space.expand()] == [7]
    assert [s.cfg.seed for s in space.expand({"seed": 4})] == [4]


def test_grid_seed_is_the_same_as_seeds(tmp_path):
    space = load_space(write(tmp_path, TINY_BASE + "grid:\n  seed: [1, 2]\n  method: [partial]\n"))
    assert [s.cfg.seed for s in space.expand()] == [1, 2] and space.grid == {"method": ("partial",)}


def test_base_can_be_a_config_file_from_best_config(tmp_path):
    (tmp_path / "best.yaml").write_text("method: partial\nlambda_2: 0.3\npreset: tiny\n_source: {sweep: x}\n")
    p = write(tmp_path, "base: best.yaml\nseeds: [0, 1]\n")
    specs = load_space(p).expand()
    assert [(s.cfg.method, s.cfg.lambda_2, s.cfg.seed) for s in specs] == [("partial", 0.3, 0), ("partial", 0.3, 1)]


def test_search_bounds_and_points_are_validated_as_configs(tmp_path):
    p = write(tmp_path, tiny("""
    search:
      params:
        lambda_2: {distribution: uniform, low: -1.0, high: 1.0}
    """))
    with pytest.raises(UserError, match=r"space\.yaml: lambda_2 must be a finite number >= 0"):
        load_space(p)


def test_unknown_space_lists_the_shipped_ones():
    with pytest.raises(UserError, match="ablation, demo, lambdas, table1"):
        resolve_space_path("no_such_space")


def _sweep(*args):
    return CliRunner().invoke(main, ["sweep", *map(str, args)], catch_exceptions=False)


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        (TINY_BASE + "gird:\n  method: [partial]\n", ["unknown key 'gird'", "did you mean 'grid'"]),
        (TINY_BASE + "  lamda_2: 0\n", ["base: unknown config key 'lamda_2'", "did you mean 'lambda_2'"]),
        (TINY_BASE + "grid:\n  epochs: [two]\n", ["grid.epochs", "needs a int"]),
        (TINY_BASE + "grid:\n  method: partial\n", ["grid.method must be a list"]),
        (TINY_BASE + "grid: {}\n", ["grid is empty"]),
        (TINY_BASE + "grid:\n  method: []\n", ["grid.method is empty"]),
        (TINY_BASE + "  lambda_4: -1\n", ["lambda_4 must be a finite number >= 0"]),
        (TINY_BASE + "variants:\n  bad: {lambda_3: -0.5}\n",
         ["lambda_3 must be a finite number >= 0", "variant 'bad'"]),
        (TINY_BASE + "grid:\n  lambda_5: [1, -2]\n", ["lambda_5 must be a finite number >= 0", "lambda_5=-2"]),
        (TINY_BASE + "seeds: [0, x]\n", ["seeds", "needs a int"]),
        (TINY_BASE + "search:\n  params:\n    lambda_1: {distribution: loguniform, low: 0, high: 1}\n",
         ["search.params.lambda_1", "low > 0"]),
        (TINY_BASE + "search:\n  num_sample: 3\n", ["unknown key 'num_sample' in search", "num_samples"]),
        (TINY_BASE + "scheduler:\n  type: hyperband\n", ["scheduler.type 'hyperband'"]),
        ("base: [1, 2]\n", ["base must be a mapping"]),
    ],
)
def test_bad_space_exits_2_naming_file_and_field(tmp_path, body, needles):
    p = write(tmp_path, body)
    r = _sweep(p, "--dry-run")
    assert r.exit_code == 2, r.output
    assert f"error: {p}: " in r.output and "Traceback" not in r.output
    for needle in needles:
        assert needle in r.output


def test_dry_run_counts_and_runs_nothing(tmp_path):
    r = _sweep("table1", "--set", "dataset=acdc", "--dry-run", "--storage", tmp_path)
    assert r.exit_code == 0, r.output
    assert "39 trials (3 seed(s) × 13 configurations" in r.output
    assert "G_IS forward" in r.output and "GFLOP per image" in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip().split(" ")[0].isdigit()]) == 39
    assert list(tmp_path.iterdir()) == []  # nothing written, Ray never started
    r = _sweep("lambdas", "--dry-run")
    assert r.exit_code == 0 and "80 trials = 4 grid cell(s) × 20 tpe samples" in r.output


def test_dry_run_compute_is_flops_times_images_times_epochs(tmp_path):
    from sweep.runner import gis_forward_flops

    p = write(tmp_path, TINY_BASE + "grid:\n  method: [partial, cyclegan]\n")
    r = _sweep(p, "--dry-run")
    assert r.exit_code == 0, r.output
    flops = gis_forward_flops(resolve_config(load_space(p).base))
    expected = 2 * flops * 24 * 2 / 1e12  # 2 trials × 24 images × 2 epochs
    assert f"{expected:.3g} TFLOP" in r.output and "4 trial-epochs" in r.output


def test_gis_flops_match_a_hand_count_for_one_conv():
    from sweep.runner import gis_forward_flops

    # ngf=1, no residual blocks, 8×8 RGB → 11 classes. Convs: 7×7 3→1 at 8×8; 3×3 1→2 at 4×4;
    # 3×3 2→4 at 2×2; transposed 3×3 4→2 at 4×4 and 2→1 at 8×8; 7×7 1→11 at 8×8. FLOPs = 2·MACs.
    cfg = resolve_config({"dataset": "digits", "preset": "tiny", "ngf": 1, "n_blocks": 0, "image_height": 8,
                          "image_width": 8})
    macs = 64 * 49 * 3 + 16 * 9 * 1 * 2 + 4 * 9 * 2 * 4 + 4 * 9 * 4 * 2 + 16 * 9 * 2 * 1 + 64 * 49 * 1 * 11
    assert gis_forward_flops(cfg) == 2 * macs


def test_cell_searcher_replicates_each_suggestion_over_seeds_and_tells_optuna_the_mean(tmp_path):
    from ray.tune.search import Searcher

    from sweep.runner import CellSearcher, Plan

    p = write(tmp_path, tiny("""
    grid:
      labeled_fraction: [0.2, 0.5]
    seeds: [0, 1]
    search:
      num_samples: 2
      params:
        lambda_2: {distribution: loguniform, low: 0.005, high: 0.5}
      points_to_evaluate:
        - {lambda_2: 0.05}
    """))
    space = load_space(p)
    plan = Plan.build(space, {})
    assert plan.num_trials == 2 * 2 * 2
    s = CellSearcher(plan.cells, space.search, plan.seeds)
    got = [s.suggest(f"t{i}") for i in range(8)]
    assert s.suggest("t8") == Searcher.FINISHED
    cfgs = [g["trial"]["cfg"] for g in got]
    # each suggestion runs once per seed, back to back; the cells take turns; the paper's point first
    assert [(c["labeled_fraction"], c["seed"]) for c in cfgs] == [(0.2, 0), (0.2, 1), (0.5, 0), (0.5, 1)] * 2
    assert cfgs[0]["lambda_2"] == cfgs[1]["lambda_2"] == 0.05 and cfgs[2]["lambda_2"] == 0.05
    assert cfgs[4]["lambda_2"] == cfgs[5]["lambda_2"] != 0.05 and 0.005 <= cfgs[4]["lambda_2"] <= 0.5
    assert all(resolve_config(c).lambda_2 == c["lambda_2"] for c in cfgs)
    # objective = the metric at each seed's best epoch, averaged over seeds; told once both ended
    for v in (0.2, 0.6, 0.4):
        s.on_trial_result("t0", {"val_miou": v})
    s.on_trial_complete("t0", {"val_miou": 0.4})
    study = s.inner[0]._ot_study
    assert [t.value for t in study.trials if t.value is not None] == []
    s.on_trial_complete("t1", {"val_miou": 0.3})
    assert [t.value for t in study.trials if t.value is not None] == [pytest.approx(0.45)]
    # a seed that failed counts as missing; both failed: the suggestion is failed for Optuna
    s.on_trial_complete("t2", error=True)
    s.on_trial_complete("t3", error=True)
    assert [t.state.name for t in s.inner[1]._ot_study.trials][:1] == ["FAIL"]
