"""TrialConfig and its resolution: order of layers, presets, typed checks and the one-line errors."""

import dataclasses

import pytest

from cycleseg.model.config import (
    DEFAULTS,
    EXECUTION_FIELDS,
    FIELD_NAMES,
    GAN_FIELDS,
    PRESETS,
    TrialConfig,
    config_to_yaml,
    describe,
)
from cycleseg.model.errors import UserError
from cycleseg.model.resolve import load_config_file, parse_set, replace, resolve_config


def test_defaults_are_the_papers():
    cfg = resolve_config()
    assert (cfg.lambda_1, cfg.lambda_2, cfg.lambda_3, cfg.lambda_4, cfg.lambda_5) == (1.0, 0.05, 1.0, 1.0, 1.0)
    assert (cfg.lr, cfg.beta1, cfg.beta2, cfg.batch_size, cfg.epochs) == (2e-4, 0.5, 0.999, 5, 400)
    assert (cfg.ngf, cfg.ndf, cfg.n_blocks) == (64, 64, 9)


def test_later_layers_win_and_preset_fills_only_unset_sizes():
    cfg = resolve_config({"preset": "tiny", "lambda_2": 0.5}, {"lambda_2": 0, "ngf": 12})
    assert cfg.lambda_2 == 0.0 and isinstance(cfg.lambda_2, float)
    assert cfg.ngf == 12 and cfg.n_blocks == PRESETS["tiny"]["n_blocks"]


def test_parse_set_reads_yaml_scalars_as_field_types():
    assert parse_set(["lambda_2=0", "epochs=3", "amp=false", "data_root=null", "method=partial", "lr=1e-3"]) == {
        "lambda_2": 0.0, "epochs": 3, "amp": False, "data_root": None, "method": "partial", "lr": 0.001,
    }


def test_full_method_records_every_label_used():
    assert resolve_config({"method": "full", "labeled_fraction": 0.1}).labeled_fraction == 1.0


def test_hash_ignores_where_it_runs_but_not_what_it_computes():
    a = resolve_config({"device": "cpu"})
    assert a.hash() == resolve_config({"device": "auto", "data_root": "/x", "compile": True}).hash()
    assert a.hash() != resolve_config({"seed": 1}).hash()
    assert a.hash(exclude=("seed",)) == resolve_config({"seed": 1}).hash(exclude=("seed",))
    assert set(FIELD_NAMES) > EXECUTION_FIELDS


@pytest.mark.parametrize(
    ("layer", "needle"),
    [
        ({"lamda_2": 1}, "unknown config key 'lamda_2' (did you mean 'lambda_2'?)"),
        ({"dataset": "digit"}, "did you mean 'digits'"),
        ({"method": "cycle_gan"}, "did you mean 'cyclegan'"),
        ({"preset": "tinny"}, "did you mean 'tiny'"),
        ({"labeled_fraction": 0}, "labeled_fraction must be > 0"),
        ({"labeled_fraction": 1.5}, "labeled_fraction must be <= 1"),
        ({"lambda_3": -1}, "lambda_3 must be >= 0"),
        ({"lambda_3": float("inf")}, "lambda_3 must be a finite number"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"lr": 0}, "lr must be > 0"),
        ({"beta2": 1.0}, "beta2 must be < 1"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"seed": 2**32}, "seed must be < 4294967296"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"epochs": 2.5}, "epochs must be a whole number"),
        ({"epochs": True}, "epochs must be a number, not true/false"),
        ({"image_height": 30}, "image_height must be a multiple of 4"),
        ({"device": "gpu"}, "device is not a valid value"),
        ({"method": "hung", "image_height": 16, "image_width": 16}, "needs images at least 32x32"),
    ],
)
def test_bad_values_name_the_field(layer, needle):
    with pytest.raises(UserError) as e:
        resolve_config(layer)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_errors_say_what_the_field_means():
    with pytest.raises(UserError, match=r"\(labeled_fraction: share of training images whose masks are used"):
        resolve_config({"labeled_fraction": 2})


def test_set_needs_key_value():
    with pytest.raises(UserError, match="not key=value"):
        parse_set(["lambda_2"])


def test_config_file_roundtrip(tmp_path):
    cfg = resolve_config({"preset": "tiny", "seed": 3, "lambda_4": 0.25})
    f = tmp_path / "c.yaml"
    f.write_text(config_to_yaml(cfg) + "_source: {sweep: x}\n")
    assert resolve_config(load_config_file(f)) == cfg
    f.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="must be a mapping"):
        load_config_file(f)
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(UserError, match="is not a text file"):
        load_config_file(f)
    with pytest.raises(UserError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")


def test_replace_checks_the_new_values():
    cfg = resolve_config({"preset": "tiny"})
    assert replace(cfg, lr=0.5).lr == 0.5
    with pytest.raises(UserError, match="lr must be > 0"):
        replace(cfg, lr=-1)


@pytest.mark.parametrize("name", FIELD_NAMES)
def test_every_field_declares_its_meaning_and_a_valid_default(name):
    assert describe(name), f"{name} has no description"
    assert dataclasses.replace(TrialConfig(), **{name: DEFAULTS[name]}) == TrialConfig()


def test_paper_code_recipe_sets_the_authors_choices_only_where_no_layer_does():
    cyc = resolve_config({"recipe": "paper-code"})
    assert (cyc.d_s_input, cyc.lambda_4, cyc.lambda_5, cyc.d_norm, cyc.pool_size, cyc.pool_prob) == (
        "detached_argmax", 0.5, 0.5, "instance", 50, 0.5)
    assert (cyc.lambda_2, cyc.discriminator, cyc.beta1) == (0.05, "pixel", 0.5)  # as the paper: untouched
    assert resolve_config({"recipe": "paper-code", "method": "partial"}).beta1 == 0.9
    assert resolve_config({"recipe": "paper-code", "method": "partial"}).d_s_input == "softmax"  # not partial's
    mine = resolve_config({"recipe": "paper-code"}, {"lambda_4": 1.0, "pool_size": 0})  # a layer wins
    assert (mine.lambda_4, mine.pool_size, mine.lambda_5) == (1.0, 0, 0.5)
    paper = resolve_config()
    assert all(getattr(paper, k) == DEFAULTS[k] for k in GAN_FIELDS)  # the paper as written by default


def test_new_fields_at_their_defaults_keep_the_hash_configs_had_before_they_existed():
    # the default config's hash on main before recipe and GAN_FIELDS were added (sweeps on disk carry it)
    assert TrialConfig().hash() == "8c3feb79c887"
    assert TrialConfig(pool_size=50).hash() != TrialConfig().hash()
    assert TrialConfig(recipe="paper-code").hash() != TrialConfig().hash()


def test_config_docs_are_generated_and_list_every_field_with_its_range_and_meaning():
    from pathlib import Path

    from cycleseg.model.config import fields_markdown

    docs = Path(__file__).resolve().parents[2] / "docs" / "config.md"
    assert docs.read_text() == fields_markdown(), "docs/config.md is stale: run `make schema`"
    rows = {ln.split("|")[1].strip(" `"): ln for ln in fields_markdown().splitlines() if ln.startswith("| `")}
    assert list(rows) == list(FIELD_NAMES)
    assert "float, ≥ 0, < 1" in rows["real_label_smoothing"] and "`0.0`" in rows["real_label_smoothing"]
    assert "softmax \\| detached_argmax \\| straight_through \\| gumbel" in rows["d_s_input"]
    assert "int or null, ≥ 8, ≤ 8192, multiple of 4" in rows["image_height"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ":1:1: config file holds no keys"),
        ("# only a comment\n\n", ":1:1: config file holds no keys"),
        ("{}\n", ":1:1: config file holds no keys"),
        ("seed: 1\npreset: tiny\nseed: 2\n", ":3:1: config file is not valid YAML: key 'seed' is given twice "
                                             "(first on line 1); keep one of them"),
        ("a:\n  b: 1\n  c: 2\n  b: 3\n",
         ":4:3: config file is not valid YAML: key 'b' is given twice (first on line 2)"),
        ("preset: tiny\n\tseed: 1\n", ":2:1: config file is not valid YAML: found character '\\t' that cannot start "
                                      "any token; indent with spaces, not tabs"),
        ("preset: {a: 1\nseed: 2\n", ":2:5: config file is not valid YAML: expected ',' or '}', but got ':' "
                                     "while parsing a flow mapping (begun at 1:9); close the { or [ opened before"),
        ('preset: "tiny\n', ":2:1: config file is not valid YAML: found unexpected end of stream while scanning "
                            "a quoted scalar (begun at 1:9); close the quote opened before this point"),
    ],
)
def test_config_files_are_strict_and_errors_say_file_line_column(tmp_path, text, expected):
    """PyYAML alone accepts a repeated key (the last wins) and an empty file (None); both are refused here."""
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(UserError) as e:
        load_config_file(f)
    assert str(e.value).startswith(f"{f}{expected}"), str(e.value)
