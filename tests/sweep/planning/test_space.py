"""Search-space files: expansion counts and precedence, shipped spaces, and bad YAML → exit 2 naming the field."""

import importlib.resources
import textwrap

import pytest
from click.testing import CliRunner

from cycleseg.cli import main
from cycleseg.model.errors import UserError
from cycleseg.sweep.planning.space import (
    SCHEMA_FILE,
    SHIPPED_PACKAGE,
    load_space,
    resolve_space_path,
    schema_json,
    shipped_spaces,
)

TINY_BASE = """
base:
  dataset: digits
  preset: tiny
  image_height: 32
  image_width: 32
  digits_train: 24
  digits_val: 8
  digits_test: 8
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


def test_demo_is_partial_two_cyclegans_and_full_at_20_percent_by_three_fresh_seeds():
    specs = load_space("demo").expand()
    arms = {(s.variant, s.cfg.method, s.cfg.labeled_fraction, s.cfg.lambda_4) for s in specs}
    # full, the positive control, records the labeled fraction it trains on: 1.0
    assert arms == {("proposed", "cyclegan", 0.2, 1.0), ("no_label_disc", "cyclegan", 0.2, 0.0),
                    ("partial", "partial", 0.2, 1.0), ("full", "full", 1.0, 1.0)}
    assert all(s.cfg.dataset == "digits" and s.cfg.preset == "tiny" and s.cfg.ngf == 8 for s in specs)
    # seeds that chose nothing (the ablation read 0–4, the search 0–1), outermost: one full pass per seed
    assert [s.cfg.seed for s in specs] == [100] * 4 + [101] * 4 + [102] * 4


def test_digits_table1_is_four_methods_by_two_fractions_by_three_seeds():
    specs = load_space("digits-table1").expand()
    assert len(specs) == 3 * (1 + 3 * 2)  # full once per seed
    assert {(s.cfg.method, s.cfg.labeled_fraction) for s in specs} == {
        ("full", 1.0), *((m, f) for m in ("partial", "hung", "cyclegan") for f in (0.1, 0.2))}


def test_table1_runs_full_once_per_seed_and_takes_the_dataset_from_set():
    space = load_space("table1")  # a shipped space by name
    specs = space.expand({"dataset": "cityscapes"})
    paper = [s for s in specs if s.variant == "proposed"]
    assert len(paper) == 3 * (1 + 3 * 4)  # full collapses to labeled_fraction 1.0: 39, not 48
    levers = {v: [s.cfg for s in specs if s.variant == v] for v in ("no_label_disc", "paper_code", "partial_code")}
    assert {v: len(c) for v, c in levers.items()} == {v: 3 * 4 for v in levers}  # each at every fraction × seed
    assert {c.lambda_4 for c in levers["no_label_disc"]} == {0.0} and {c.method for c in levers["partial_code"]} \
        == {"partial"} and {c.beta1 for c in levers["partial_code"]} == {0.9}
    full = [s.cfg for s in specs if s.cfg.method == "full"]
    assert sorted(c.seed for c in full) == [0, 1, 2] and {c.labeled_fraction for c in full} == {1.0}
    assert {s.cfg.dataset for s in specs} == {"cityscapes"}
    assert {(s.cfg.ngf, s.cfg.n_blocks, s.cfg.epochs) for s in specs} == {(64, 9, 400)}
    assert len({s.cfg.hash() for s in specs}) == len(specs)


def test_ablation_zeroes_one_lambda_per_variant():
    specs = load_space("ablation").expand()
    assert len(specs) == 27  # 9 variants × 3 seeds
    by_variant = {s.variant: s.cfg for s in specs if s.cfg.seed == 0}
    lambdas = {v: (c.lambda_2, c.lambda_3, c.lambda_4, c.lambda_5) for v, c in by_variant.items()
               if c.method == "cyclegan"}
    assert lambdas == {
        "proposed": (0.05, 1.0, 1.0, 1.0),
        "no_label_cycle": (0.0, 1.0, 1.0, 1.0),
        "no_image_cycle": (0.05, 0.0, 1.0, 1.0),
        "no_label_disc": (0.05, 1.0, 0.0, 1.0),
        "no_image_disc": (0.05, 1.0, 1.0, 0.0),
        "paper_code": (0.05, 1.0, 0.5, 0.5),  # the authors' code, with its own D_S input, D norm and pools
        "instance_noise": (0.05, 1.0, 1.0, 1.0),  # the paper's λ's, noise on the discriminators' inputs
    }
    assert by_variant["instance_noise"].instance_noise == 0.1 and by_variant["proposed"].instance_noise == 0.0
    code = by_variant["paper_code"]
    assert (code.d_s_input, code.d_norm, code.pool_size, code.recipe) == ("detached_argmax", "instance", 50,
                                                                          "paper-code")
    assert (by_variant["partial"].beta1, by_variant["partial_code"].beta1) == (0.5, 0.9)  # each recipe's baseline
    assert all(c.labeled_fraction == 0.2 for c in by_variant.values())


def test_lambdas_searches_every_lambda_log_uniformly_from_the_papers_values():
    space = load_space("lambdas")
    assert space.search is not None and space.scheduler is not None
    assert list(space.search.params) == ["lambda_1", "lambda_2", "lambda_3", "lambda_4", "lambda_5"]
    assert {p.distribution for p in space.search.params.values()} == {"loguniform"}
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
    assert space.shadowed({"lambda_2": 0.1, "lambda_3": 9.0, "seed": 1}) == (["lambda_3", "seed"], [])
    only_b = load_space(write(tmp_path, TINY_BASE + "variants:\n  a: {}\n  b: {lambda_4: 0.0}\n"))
    assert only_b.shadowed({"lambda_4": 2.0, "lambda_2": 0.1}) == ([], ["lambda_4"])


def test_a_set_that_the_space_overrides_in_every_trial_is_refused():
    for args in (["--set", "seed=7"], ["--set", "method=partial"]):
        r = CliRunner().invoke(main, ["sweep", "demo", "--dry-run", *args])
        assert r.exit_code == 2 and "would change nothing" in r.output, r.output


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
    with pytest.raises(UserError, match=r"space\.yaml: lambda_2 must be >= 0, got -1.0"):
        load_space(p)


def test_unknown_space_lists_the_shipped_ones():
    shipped = "ablation, demo, digits-ablation, digits-search, digits-table1, lambdas, table1"
    with pytest.raises(UserError, match=shipped):
        resolve_space_path("no_such_space")


def _sweep(*args):
    return CliRunner().invoke(main, ["sweep", *map(str, args)], catch_exceptions=False)


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        (TINY_BASE + "gird:\n  method: [partial]\n", ["unknown key 'gird'", "did you mean 'grid'"]),
        (TINY_BASE + "  lamda_2: 0\n", ["unknown config key 'lamda_2' in base", "did you mean 'lambda_2'"]),
        (TINY_BASE + "grid:\n  epochs: [two]\n", ["grid.epochs[0] must be a whole number, got 'two'"]),
        (TINY_BASE + "grid:\n  method: partial\n", ["grid.method must be a list"]),
        (TINY_BASE + "grid: {}\n", ["grid is empty"]),
        (TINY_BASE + "grid:\n  method: []\n", ["grid.method is empty"]),
        (TINY_BASE + "  lambda_4: -1\n", ["base.lambda_4 must be >= 0, got -1"]),
        (TINY_BASE + "variants:\n  bad: {lambda_3: -0.5}\n", ["variants.bad.lambda_3 must be >= 0, got -0.5"]),
        (TINY_BASE + "grid:\n  lambda_5: [1, -2]\n", ["grid.lambda_5[1] must be >= 0, got -2"]),
        (TINY_BASE + "grid:\n  method: [hung]\n  image_height: [16]\n",
         ["needs images at least 32x32", "in the trial with image_height=16, method=hung"]),
        (TINY_BASE + "seeds: [0, x]\n", ["seeds[1] must be a whole number"]),
        (TINY_BASE + "search:\n  params:\n    lambda_1: {distribution: loguniform, low: 0, high: 1}\n",
         ["search.params.lambda_1: loguniform needs low > 0"]),
        (TINY_BASE + "search:\n  params:\n    lambda_1: {distribution: uniform, low: 2, high: 1}\n",
         ["search.params.lambda_1: low (2.0) must be below high (1.0)"]),
        (TINY_BASE + "search:\n  params:\n    lamda_1: {distribution: uniform, low: 0, high: 1}\n",
         ["search.params: unknown config key 'lamda_1' (did you mean 'lambda_1'?)"]),
        (TINY_BASE + "search:\n  num_sample: 3\n", ["unknown key 'num_sample' in search (did you mean"]),
        (TINY_BASE + "scheduler:\n  type: hyperband\n", ["scheduler.type must be one of: asha, got 'hyperband'"]),
        (TINY_BASE + "grid:\n  lr: [0.001, 0.002]\nscheduler: {type: asha}\n",
         ["early stopping compares configurations within a grid cell", "add a search:"]),
        (TINY_BASE + "search:\n  metric: test_miou\n  params:\n    lr: {distribution: choice, values: [0.1]}\n",
         ["'test_miou' is a test metric", "use val_miou"]),
        (TINY_BASE + "search:\n  params:\n    lr: {distribution: choice, values: [0.1]}\n"
         "scheduler:\n  metric: val_mIoU\n", ["unknown metric 'val_mIoU' (did you mean 'val_miou'?)"]),
        ("base: [1, 2]\n", ["base must be a mapping"]),
        ("- just\n- a list\n", ["must be a mapping"]),
    ],
)
def test_bad_space_exits_2_naming_file_and_field(tmp_path, body, needles):
    p = write(tmp_path, body)
    r = _sweep(p, "--dry-run")
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and str(p) in r.output and "Traceback" not in r.output
    for needle in needles:
        assert needle in r.output


def shipped_schema() -> str:
    """The schema.json the package ships (what an editor validates a space against)."""
    return (importlib.resources.files(SHIPPED_PACKAGE) / SCHEMA_FILE).read_text()


def test_shipped_schema_is_the_generated_one_and_every_shipped_space_follows_it():
    import json

    import jsonschema
    import yaml

    assert shipped_schema() == schema_json(), "search_spaces/schema.json is stale: run `make schema`"
    schema = json.loads(shipped_schema())
    for name, resource in shipped_spaces().items():
        jsonschema.validate(yaml.safe_load(resource.read_text()), schema)  # raises on a violation
        load_space(name)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"grid": {"lambda_2": [-1]}}, schema)  # the schema knows each field's range
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"gird": {}}, schema)
