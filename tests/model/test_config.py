"""TrialConfig: resolution order, coercion, presets and the one-line errors."""

import pytest

from model.config import PRESETS, TrialConfig, load_config_file, parse_set, resolve_config
from model.errors import UserError


def test_defaults_are_the_papers():
    cfg = resolve_config()
    assert (cfg.lambda_1, cfg.lambda_2, cfg.lambda_3, cfg.lambda_4, cfg.lambda_5) == (1.0, 0.05, 1.0, 1.0, 1.0)
    assert (cfg.lr, cfg.beta1, cfg.beta2, cfg.batch_size, cfg.epochs) == (2e-4, 0.5, 0.999, 5, 400)
    assert (cfg.ngf, cfg.ndf, cfg.n_blocks) == (64, 64, 9)


def test_later_layers_win_and_preset_fills_only_unset_sizes():
    cfg = resolve_config({"preset": "tiny", "lambda_2": 0.5}, {"lambda_2": 0, "ngf": 12})
    assert cfg.lambda_2 == 0.0 and isinstance(cfg.lambda_2, float)
    assert cfg.ngf == 12 and cfg.n_blocks == PRESETS["tiny"]["n_blocks"]


def test_parse_set_coerces_to_field_types():
    assert parse_set(["lambda_2=0", "epochs=3", "amp=false", "data_root=none", "method=partial"]) == {
        "lambda_2": 0.0, "epochs": 3, "amp": False, "data_root": None, "method": "partial",
    }


def test_full_method_records_every_label_used():
    assert resolve_config({"method": "full", "labeled_fraction": 0.1}).labeled_fraction == 1.0


def test_hash_ignores_where_it_runs_but_not_what_it_computes():
    a = resolve_config({"device": "cpu"})
    assert a.hash() == resolve_config({"device": "auto", "data_root": "/x"}).hash()
    assert a.hash() != resolve_config({"seed": 1}).hash()
    assert a.hash(exclude=("seed",)) == resolve_config({"seed": 1}).hash(exclude=("seed",))


@pytest.mark.parametrize(
    ("layer", "needle"),
    [
        ({"lamda_2": 1}, "did you mean 'lambda_2'"),
        ({"dataset": "digit"}, "did you mean 'digits'"),
        ({"method": "cycle_gan"}, "did you mean 'cyclegan'"),
        ({"preset": "tinny"}, "did you mean 'tiny'"),
        ({"labeled_fraction": 0}, "labeled_fraction must be in (0, 1]"),
        ({"labeled_fraction": 1.5}, "labeled_fraction must be in (0, 1]"),
        ({"lambda_3": -1}, "lambda_3 must be a finite number >= 0"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"epochs": 2.5}, "needs a int"),
        ({"image_height": 30}, "multiple of 4"),
        ({"inject_fault": "boom"}, "inject_fault"),
    ],
)
def test_bad_values_name_the_field(layer, needle):
    with pytest.raises(UserError, match=None) as e:
        resolve_config(layer)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_set_needs_key_value():
    with pytest.raises(UserError, match="not key=value"):
        parse_set(["lambda_2"])


def test_config_file_roundtrip(tmp_path):
    from model.config import config_to_yaml

    cfg = resolve_config({"preset": "tiny", "seed": 3, "lambda_4": 0.25})
    f = tmp_path / "c.yaml"
    f.write_text(config_to_yaml(cfg) + "_source: {sweep: x}\n")
    assert resolve_config(load_config_file(f)) == cfg
    f.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="must be a mapping"):
        load_config_file(f)
    with pytest.raises(UserError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")


def test_every_field_has_a_default():
    TrialConfig()  # defaults declared once, in the dataclass
