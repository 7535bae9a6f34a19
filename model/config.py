"""The trial configuration: one typed dataclass, defaults and valid ranges declared once, dumped beside every run.

A ``TrialConfig`` is everything one training run needs. Each field declares its type, its default,
its valid range and what it means, and pydantic checks all of them when a config is built, so a bad
value is refused before anything runs. ``cycleseg.model.resolve`` builds a config from layers (the
defaults, a preset, a YAML file, ``key=value`` overrides) and checks the names that need the
dataset and method registries. The resolved config is what gets written to ``config.yaml`` and
hashed, so two runs with equal hashes ran the same experiment. The JSON Schema of a config (and of
the search-space files built on it) is generated from this class.

Paper symbols (Mondal et al. 2019, Eq. 8): ``lambda_1`` weights L^I_gen (G_SI supervised L2),
``lambda_2`` L^S_cycle (label cycle CE), ``lambda_3`` L^I_cycle (image cycle L1), ``lambda_4``
L^S_disc (label adversarial), ``lambda_5`` L^I_disc (image adversarial). L^S_gen has weight 1.

``GAN_FIELDS`` are the levers a GAN researcher reaches for beyond the λ's (how D_S sees a prediction,
instance noise, label smoothing, the discriminators' architecture and learning rate, history pools, a
warm-up and ramp-up of the unsupervised terms); their defaults are the paper as written. ``recipe:
paper-code`` sets them, where no layer sets them, the way the authors' paper-era code ran (``RECIPES``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo

from .errors import UserError
from .registry import suggest

# Network sizes per preset. ``paper`` is §3.3 of the paper (≈11.4 M parameters per generator).
PRESETS: dict[str, dict[str, int]] = {
    "paper": {"ngf": 64, "ndf": 64, "n_blocks": 9},
    "small": {"ngf": 32, "ndf": 32, "n_blocks": 6},
    "tiny": {"ngf": 8, "ndf": 8, "n_blocks": 2},
}
LAMBDAS: tuple[str, ...] = ("lambda_1", "lambda_2", "lambda_3", "lambda_4", "lambda_5")
# The unsupervised-side weights the warm-up and ramp-up scale (λ1, G_SI's supervised L2, is never ramped).
RAMPED_LAMBDAS: tuple[str, ...] = LAMBDAS[1:]
D_S_INPUTS = ("softmax", "detached_argmax", "straight_through", "gumbel")
DISCRIMINATORS = ("pixel", "patch", "hung")
D_NORMS = ("batch", "instance")
# ``recipe: paper-code``: what the authors' paper-era code (bc02d92) ran, per method, applied where no layer
# sets the field. The rows and their sources are in docs/paper-code.md. What shared/notes says not to copy
# (no ignore label, mIoU without background, ACDC split by slice) is not a training choice and stays out.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {},
    "paper-code": {
        "cyclegan": {"d_s_input": "detached_argmax", "lambda_4": 0.5, "lambda_5": 0.5, "d_norm": "instance",
                     "pool_size": 50, "pool_prob": 0.5},
        "partial": {"beta1": 0.9},
        "full": {"beta1": 0.9},
    },
}
# The epoch a trial reports (``cycleseg.model.records.selected_epoch``), always chosen on the val split.
SELECT_RULES: tuple[str, ...] = ("best_val", "final")


def _number(v: Any) -> Any:
    """Numbers are finite numbers: ``true`` is not 1 (pydantic's lax mode would take it), NaN and inf are refused."""
    if isinstance(v, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


def _num(tp: type, **constraints: Any) -> Any:
    """A number type with its range. The check comes after the range in the metadata, so the JSON Schema
    carries the range as ``minimum``/``maximum`` (pydantic leaves it raw the other way round)."""
    return Annotated[tp, Field(**constraints), BeforeValidator(_number)]


# Field types with their ranges.
PositiveFloat = _num(float, gt=0, allow_inf_nan=False)
Fraction = _num(float, gt=0, le=1, allow_inf_nan=False)
Share = _num(float, gt=0, lt=1, allow_inf_nan=False)
Weight = _num(float, ge=0, allow_inf_nan=False)
Probability = _num(float, ge=0, le=1, allow_inf_nan=False)
Beta = _num(float, ge=0, lt=1, allow_inf_nan=False)
Seed = _num(int, ge=0, lt=2**32)
# Upper bounds are far beyond any real run; they stop a typo (ngf=64000) from allocating terabytes.
Scenes = _num(int, ge=1, le=1_000_000)
Width = _num(int, ge=1, le=2048)
Blocks = _num(int, ge=0, le=128)
Epochs = _num(int, ge=1, le=100_000)
Batch = _num(int, ge=1, le=65_536)
# the methods ``methods.METHODS`` registers (torch-free, for help texts; a test keeps them equal; plugins add more)
BUILTIN_METHODS = ("cyclegan", "partial", "full", "hung")
SIDE_MULTIPLE = 4  # image sides the generators take: two stride-2 convolutions, undone by two transposed ones
Side = _num(int, ge=8, le=8192, multiple_of=SIDE_MULTIPLE)
Smoothing = _num(float, ge=0, lt=1, allow_inf_nan=False)
Depth = _num(int, ge=1, le=8)
PoolSize = _num(int, ge=0, le=100_000)
WarmEpochs = _num(int, ge=0, le=100_000)
Preset = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")]
# a choice the device can make: True, False, or None = auto (written "auto" or null); a bool column in the results
Auto = Annotated[bool | None, BeforeValidator(lambda v: None if v == "auto" else v)]


@dataclass(frozen=True, config=ConfigDict(extra="forbid", coerce_numbers_to_str=True))
class TrialConfig:
    """One trial, fully resolved. Field names follow the paper where it names them."""

    # --- data -------------------------------------------------------------------------------
    dataset: str = Field("digits", description="digits (built in), voc, cityscapes or acdc")
    data_root: str | None = Field(None, description="folder holding the dataset's on-disk layout (not for digits)")
    labeled_fraction: Fraction = Field(
        0.2, description="share of training images whose masks are used, in (0, 1]; e.g. 0.1 for 10 %"
    )
    seed: Seed = Field(0, description="fixes the labeled subset, network init and batch order; 0 ≤ seed < 2^32")
    split_seed: Seed = Field(0, description="fixes the splits a dataset does not ship (held-out val, ACDC patients, "
                             "digits scenes)")
    image_height: Side | None = Field(
        None, description=f"None = the dataset's own size; a multiple of {SIDE_MULTIPLE}, >= 8 (two stride-2 "
        "convolutions)"
    )
    image_width: Side | None = Field(None, description="as image_height")
    digits_train: Scenes = Field(400, description="`digits` only: scenes in the training set")
    digits_val: Scenes = Field(100, description="`digits` only: scenes in the validation split")
    digits_test: Scenes = Field(200, description="`digits` only: scenes in the test split")
    val_fraction: Share = Field(
        0.1, description="voc, cityscapes: share of the shipped training images held out as the validation split "
        "(the shipped val split is the test split); acdc: share of the non-test patients"
    )
    cache_dir: str | None = Field(None, description="prepared-array cache; None = $CYCLESEG_CACHE or ~/.cache/cycleseg")

    # --- method -------------------------------------------------------------------------------
    method: str = Field("cyclegan", description=f"{', '.join(BUILTIN_METHODS)}, or one a plugin registers")
    lambda_1: Weight = Field(1.0, description="weight of L^I_gen (G_SI supervised L2); 0 drops the term")
    lambda_2: Weight = Field(0.05, description="weight of L^S_cycle (label cycle CE); 0 drops the term")
    lambda_3: Weight = Field(1.0, description="weight of L^I_cycle (image cycle L1); 0 drops the term")
    lambda_4: Weight = Field(1.0, description="weight of L^S_disc (label adversarial, LSGAN); 0 drops the term")
    lambda_5: Weight = Field(1.0, description="weight of L^I_disc (image adversarial, LSGAN); 0 drops the term")
    # Hung et al. 2018 baseline (values from the authors' README, see shared notes)
    hung_lambda_adv: Weight = Field(0.01, description="hung: weight of the labeled adversarial term")
    hung_lambda_semi_adv: Weight = Field(0.001, description="hung: weight of the unlabeled adversarial term")
    hung_lambda_semi: Weight = Field(0.1, description="hung: weight of the self-training term")
    hung_t_semi: Probability = Field(0.2, description="hung: confidence threshold of the self-training term")
    hung_semi_start: Probability = Field(
        0.25, description="hung: share of the run's iterations before self-training starts"
    )
    hung_d_lr: PositiveFloat = Field(1e-4, description="hung: Adam learning rate of its discriminator")
    hung_d_beta1: Beta = Field(0.9, description="hung: Adam beta1 of its discriminator, in [0, 1)")
    hung_d_beta2: Beta = Field(0.99, description="hung: Adam beta2 of its discriminator, in [0, 1)")
    recipe: Literal[tuple(RECIPES)] = Field(  # type: ignore[valid-type]
        "paper", description="paper = the paper as written; paper-code = the authors' code bc02d92 as it ran, "
        "for the fields no layer sets (which ones, per method: docs/paper-code.md)"
    )

    # --- GAN training levers (cyclegan; defaults = the paper as written) ------------------------
    d_s_input: Literal[D_S_INPUTS] = Field(  # type: ignore[valid-type]
        "softmax", description="how D_S sees a prediction: softmax (paper Eq. 4), detached_argmax (the authors' "
        "code: a hard class map, no gradient from lambda_4 to G_IS), straight_through (hard one-hot forward, "
        "softmax gradient backward; Bengio et al. 2013), gumbel (Gumbel-softmax at gumbel_tau; Jang et al. 2017)"
    )
    gumbel_tau: PositiveFloat = Field(1.0, description="d_s_input=gumbel: the Gumbel-softmax temperature, > 0")
    instance_noise: Weight = Field(
        0.0, description="σ of Gaussian noise added to both discriminators' inputs, real and generated, in both "
        "phases (Sønderby et al. 2017); an image spans a width of 1 (per-image normalisation), a mask [0, 1]; "
        "0 = off"
    )
    instance_noise_anneal: bool = Field(
        False, description="anneal instance_noise linearly to 0 over the run's iterations"
    )
    real_label_smoothing: Smoothing = Field(
        0.0, description="one-sided label smoothing: the discriminators' real target is 1 - this, generated stays "
        "0 (Salimans et al. 2016); in [0, 1); 0 = off"
    )
    discriminator: Literal[DISCRIMINATORS] = Field(  # type: ignore[valid-type]
        "pixel", description="D_S and D_I: pixel (1x1 convs, paper §3.3), patch (PatchGAN, Isola et al. 2017: sees "
        "shapes up to its receptive field, depth d_depth), hung (Hung et al. 2018's fully convolutional D, >= 32 px)"
    )
    d_depth: Depth = Field(
        2, description="discriminator=patch: its stride-2 layers; receptive field 9*2^depth - 2 px (16, 34, 70 "
        "for 1, 2, 3); images need >= 3*2^depth px"
    )
    d_norm: Literal[D_NORMS] = Field(  # type: ignore[valid-type]
        "batch", description="norm of the pixel and patch discriminators: batch (paper §3.3) or instance (the "
        "authors' code); hung's D has none"
    )
    d_lr_ratio: PositiveFloat = Field(
        1.0, description="the discriminators' Adam learning rate as a multiple of lr (< 1: a slower D)"
    )
    pool_size: PoolSize = Field(
        0, description="history pool: generated batches kept per discriminator (Shrivastava et al. 2017; the "
        "authors' code: 50), on the device and in every checkpoint (50 VOC batches of 5: about 1 GB); 0 = off"
    )
    pool_prob: Probability = Field(
        0.5, description="pool_size > 0: the chance a full pool hands the discriminator an old batch (swapping in "
        "the new one)"
    )
    unsup_warmup_epochs: WarmEpochs = Field(
        0, description="epochs of supervised-only training first: lambda_2..lambda_5 act as 0 (the budget is "
        "unchanged: every epoch runs the same steps)"
    )
    unsup_rampup_epochs: WarmEpochs = Field(
        0, description="after the warm-up, lambda_2..lambda_5 ramp up over this many epochs as exp(-5(1-t)^2) "
        "(Laine & Aila 2017); 0 = full weight at once"
    )

    # --- networks -----------------------------------------------------------------------------
    preset: Preset = Field("paper", description="network size: paper (§3.3), small or tiny")
    ngf: Width | None = Field(None, description="generator width; None = the preset's value")
    ndf: Width | None = Field(None, description="discriminator width; None = the preset's value")
    n_blocks: Blocks | None = Field(
        None, description="residual blocks per generator; None = the preset's value"
    )

    # --- optimisation -------------------------------------------------------------------------
    epochs: Epochs = Field(400, description="training epochs")
    batch_size: Batch = Field(5, description="labeled images per step (and as many unlabeled)")
    lr: PositiveFloat = Field(2e-4, description="Adam learning rate of every network (hung's D: hung_d_lr)")
    beta1: Beta = Field(0.5, description="Adam beta1, in [0, 1)")
    beta2: Beta = Field(0.999, description="Adam beta2, in [0, 1)")
    lr_decay_start: Probability = Field(
        0.25, description="share of epochs at constant lr before the linear decay to 0 (paper: 100 of 400)"
    )

    # --- evaluation ---------------------------------------------------------------------------
    select: Literal[SELECT_RULES] = Field(  # type: ignore[valid-type]
        "best_val", description="the epoch a trial reports (test metrics included): best_val = the epoch with the "
        "best val mIoU, final = the last; chosen on val only, never on test"
    )

    # --- execution ----------------------------------------------------------------------------
    device: Device = Field("auto", description="auto, cpu, cuda or cuda:N")
    amp: bool = Field(True, description="bf16 autocast on CUDA; always fp32 on CPU")
    channels_last: bool = Field(True, description="channels_last memory format (on CPU, false is 4–9 % faster at the "
                                "small and paper presets, but rounds differently: BENCHMARKS.md)")
    merge_passes: Auto = Field(
        None, description="run a network once over batches it would take in separate passes, where that is the same "
        "arithmetic (no batch statistics): true, false, or auto (null) = on CUDA only (on CPU no faster, and it "
        "rounds differently)"
    )
    compile: bool = Field(False, description="torch.compile the networks")
    eval_batch_size: Batch = Field(20, description="images per evaluation batch")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self, exclude: tuple[str, ...] = ()) -> str:
        """Stable short hash of the resolved config (``exclude=("seed",)`` groups replicates)."""
        d = {k: v for k, v in self.to_dict().items() if k not in exclude and k not in EXECUTION_FIELDS
             and not (k in LATER_FIELDS and v == DEFAULTS[k])}
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrialConfig))
# cyclegan's own settings beyond the λ's: from d_s_input to unsup_rampup_epochs, in declaration order
GAN_FIELDS: tuple[str, ...] = FIELD_NAMES[FIELD_NAMES.index("d_s_input"): FIELD_NAMES.index("unsup_rampup_epochs") + 1]
DEFAULTS: dict[str, Any] = TrialConfig().to_dict()
# Fields that say where/how a run executes, not what it computes: left out of the hash, and never a
# reason to keep two trials' results apart in a report.
# Fields added after sweeps were already on disk: at their default they stay out of the hash, so a
# configuration keeps the hash it had before they existed (a sweep resumed across the upgrade keeps its groups).
LATER_FIELDS = frozenset({"recipe", "merge_passes", *GAN_FIELDS})
EXECUTION_FIELDS = frozenset({"data_root", "cache_dir", "device", "amp", "channels_last", "merge_passes", "compile",
                              "eval_batch_size"})


def complete(values: dict[str, Any]) -> dict[str, Any]:
    """A config dict written before ``LATER_FIELDS`` existed, with them at their defaults (what it ran)."""
    return {**values, **{k: DEFAULTS[k] for k in LATER_FIELDS if k not in values}}


def describe(name: str) -> str:
    """The meaning of config field ``name`` (its declared description)."""
    return TrialConfig.__dataclass_fields__[name].default.description or ""


def unknown_key(key: str) -> str:
    return f"unknown config key '{key}'{suggest(key, FIELD_NAMES)}; valid keys: {', '.join(FIELD_NAMES)}"


def _plain(v: Any) -> str:
    return repr(v) if not isinstance(v, str) else f"'{v}'"


_PHRASES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "multiple_of": "must be a multiple of {multiple_of}",
    "int_from_float": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "string_pattern_mismatch": "is not a valid value",
    "literal_error": "must be one of: {expected}",
}


def error_line(e: ValidationError, where: str = "") -> str:
    """A pydantic error as our one line: which key, what is wrong with the value, and what the key means."""
    err = e.errors(include_url=False)[0]
    key = ".".join(str(p) for p in err["loc"]) or "config"
    if err["type"] == "unexpected_keyword_argument":
        return f"{where}{unknown_key(key)}"
    phrase = _PHRASES.get(err["type"])
    if phrase is None:
        msg = err["msg"].removeprefix("Value error, ")
    else:
        ctx = {k: f"{v:g}" if isinstance(v, float) else str(v).replace("'", "") for k, v in err.get("ctx", {}).items()}
        msg = phrase.format(**ctx)
    hint = suggest(str(err.get("input")), list(PRESETS)) if err["type"] == "literal_error" else ""
    meaning = describe(key) if key in FIELD_NAMES else ""
    return f"{where}{key} {msg}, got {_plain(err.get('input'))}{hint}" + (f" ({key}: {meaning})" if meaning else "")


def build(values: dict[str, Any], where: str = "") -> TrialConfig:
    """``TrialConfig(**values)`` with pydantic's checks turned into a one-line ``UserError``."""
    try:
        return TrialConfig(**values)
    except ValidationError as e:
        raise UserError(error_line(e, where)) from None


def check_value(key: str, value: Any, where: str = "") -> Any:
    """``value`` as config field ``key`` would store it (type and range checked); a ``UserError`` if not."""
    if key not in FIELD_NAMES:
        raise UserError(f"{where}{unknown_key(key)}")
    return getattr(build({key: value}, where), key)


def _range(name: str) -> str:
    """A field's type and valid values, as a reader of the config docs needs them."""
    fi = TrialConfig.__pydantic_fields__[name]
    tp = fi.annotation
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if args and typing.get_origin(tp) in (typing.Union, types.UnionType) else tp
    metadata = list(fi.metadata)
    if typing.get_origin(base) is Annotated:  # an optional field's range sits inside the union
        metadata += [x for m in base.__metadata__ for x in (m.metadata if isinstance(m, FieldInfo) else [m])]
        base = typing.get_args(base)[0]
    if typing.get_origin(base) is Literal:
        kind = " \\| ".join(map(str, typing.get_args(base)))
    else:
        kind = getattr(base, "__name__", str(base))
    bounds = []
    for m in metadata:
        for attr, sym in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("multiple_of", "multiple of")):
            v = getattr(m, attr, None)
            if v is not None:
                bounds.append(f"{sym} {v:g}" if isinstance(v, float) else f"{sym} {v}")
        if getattr(m, "pattern", None):
            bounds.append(f"`{m.pattern}`".replace("|", "\\|"))
    optional = " or null" if type(None) in typing.get_args(tp) else ""
    return f"{kind}{optional}" + (f", {', '.join(bounds)}" if bounds else "")


def fields_markdown() -> str:
    """docs/config.md: every config field with its type and range, default and meaning (``make schema`` writes it)."""
    lines = ["# Config fields", "",
             "Generated from `TrialConfig` (`model/config.py`) by `make schema`; do not edit. Set any of them with "
             "`--set key=value` (`debug`, `sweep`), in a `--config` YAML, or in a search space's `base`, `grid`, "
             "`variants` and `search` (their JSON Schema: `search_spaces/schema.json`).", "",
             "| field | type and range | default | meaning |", "|---|---|---|---|"]
    for name in FIELD_NAMES:
        meaning = describe(name).replace("|", "\\|")
        lines.append(f"| `{name}` | {_range(name)} | `{DEFAULTS[name]}` | {meaning} |")
    return "\n".join(lines) + "\n"


def config_to_yaml(cfg: TrialConfig, header: str = "") -> str:
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    return (header + text) if header else text
