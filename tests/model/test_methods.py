"""Methods: which networks each loss term reaches, phase isolation, forward counts, the fast path."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from cycleseg.model import losses
from cycleseg.model import methods as methods_module
from cycleseg.model.config import TrialConfig
from cycleseg.model.data import DatasetInfo
from cycleseg.model.errors import UserError
from cycleseg.model.masks import one_hot
from cycleseg.model.methods import METHODS, Batch, Method, hung_pseudo_labels

CPU = torch.device("cpu")
INFO = DatasetInfo(name="toy", num_classes=3, in_channels=3, class_names=("bg", "a", "b"), height=16, width=16)
INFO32 = dataclasses.replace(INFO, height=32, width=32)  # hung's discriminator needs >= 32


def make_cfg(**kw) -> TrialConfig:
    base = dict(ngf=4, ndf=4, n_blocks=1, channels_last=False, amp=True, compile=False)
    return TrialConfig(**{**base, **kw})


def build(method: str, cfg: TrialConfig | None = None, info: DatasetInfo = INFO, seed: int = 0,
          total_iters: int = 10) -> Method:
    torch.manual_seed(seed)
    return METHODS.get(method)(cfg or make_cfg(method=method), info, CPU, total_iters)


def make_batch(info: DatasetInfo = INFO, seed: int = 1, b: int = 2) -> Batch:
    g = torch.Generator().manual_seed(seed)
    shape = (b, info.in_channels, info.height, info.width)
    y = torch.randint(0, info.num_classes, (b, info.height, info.width), generator=g)
    y[:, 0, :3] = 255  # some ignored pixels
    return Batch(x=torch.rand(shape, generator=g) * 2 - 1, y=y, x_u=torch.rand(shape, generator=g) * 2 - 1)


def only(**lams: float) -> TrialConfig:
    zero = {f"lambda_{i}": 0.0 for i in range(1, 6)}
    return make_cfg(**{**zero, **lams})


def touched(m: Method) -> set[str]:
    """Networks with a non-zero gradient somewhere."""
    return {n for n, net in m.raw_networks.items()
            if any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())}


def snapshot(m: Method, names) -> dict[str, dict[str, torch.Tensor]]:
    return {n: {k: v.clone() for k, v in m.raw_networks[n].state_dict().items()} for n in names}


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])


def count_forwards(m: Method, batch: int = 2) -> dict[str, int]:
    """Batches of ``batch`` images each network sees from now on (two batches in one merged pass count 2)."""
    counts = dict.fromkeys(m.raw_networks, 0)
    for n, net in m.raw_networks.items():
        net.register_forward_pre_hook(lambda _, args, n=n: counts.__setitem__(n, counts[n] + len(args[0]) // batch))
    return counts


def count_passes(m: Method) -> dict[str, int]:
    """Forward calls of each network from now on."""
    counts = dict.fromkeys(m.raw_networks, 0)
    for n, net in m.raw_networks.items():
        net.register_forward_hook(lambda *_, n=n: counts.__setitem__(n, counts[n] + 1))
    return counts


# --- registry and construction ----------------------------------------------------------------

@pytest.mark.parametrize("name", METHODS.names())
def test_each_method_declares_exactly_the_terms_it_logs_and_what_data_it_reads(name):
    m = build(name, make_cfg(method=name, hung_semi_start=0.0), INFO32)
    b = make_batch(INFO32)
    terms = m.optimize_parameters(b)
    assert set(terms) == set(METHODS.get(name).LOSS_TERMS)  # every term on: all declared keys, no others
    unlabeled_ignored = build(name, make_cfg(method=name, hung_semi_start=0.0), INFO32)
    other = unlabeled_ignored.optimize_parameters(dataclasses.replace(b, x_u=-b.x_u))
    uses = any(not torch.equal(terms[k], other[k]) for k in terms)
    assert uses == METHODS.get(name).uses_unlabeled  # the flag the data pipeline trusts is true


def test_cyclegan_networks_and_optimizers():
    cfg = make_cfg(lr=3e-4, beta1=0.4, beta2=0.9)
    m = build("cyclegan", cfg)
    assert list(m.networks) == ["G_IS", "G_SI", "D_S", "D_I"]
    ids = {n: {id(p) for p in net.parameters()} for n, net in m.raw_networks.items()}
    g_params = {id(p) for grp in m.optimizers["G"].param_groups for p in grp["params"]}
    d_params = {id(p) for grp in m.optimizers["D"].param_groups for p in grp["params"]}
    assert g_params == ids["G_IS"] | ids["G_SI"] and d_params == ids["D_S"] | ids["D_I"]
    for opt in m.optimizers.values():
        grp = opt.param_groups[0]
        assert (grp["lr"], grp["betas"], grp["foreach"]) == (3e-4, (0.4, 0.9), True)
    assert m.networks["G_IS"].model[1].in_channels == 3 and m.networks["G_IS"].model[-1].out_channels == 3
    assert not m.use_amp  # amp=True never autocasts on CPU


def test_same_seed_same_init_and_G_IS_shared_with_partial():
    a, b, p = build("cyclegan"), build("cyclegan"), build("partial")
    assert same(snapshot(a, a.raw_networks), snapshot(b, b.raw_networks))
    assert same(snapshot(a, ["G_IS"]), snapshot(p, ["G_IS"]))  # paired comparisons start equal
    c = build("cyclegan", seed=1)
    assert not same(snapshot(a, ["G_IS"]), snapshot(c, ["G_IS"]))


def test_rejects_image_sizes_the_networks_cannot_take():
    with pytest.raises(UserError, match="divisible by 4"):
        build("cyclegan", info=dataclasses.replace(INFO, height=18))
    with pytest.raises(UserError, match="at least 32x32"):
        build("hung", make_cfg(method="hung"), info=INFO)


# --- cyclegan: which networks each term reaches ---------------------------------------------

# term → (λ config that enables only it, networks that must receive gradient from it)
TERMS = {
    "S_gen": ({}, {"G_IS"}),
    "I_gen": ({"lambda_1": 0.7}, {"G_SI"}),
    "S_cycle": ({"lambda_2": 0.7}, {"G_IS", "G_SI"}),
    "I_cycle": ({"lambda_3": 0.7}, {"G_IS", "G_SI"}),
    "S_adv_G": ({"lambda_4": 0.7}, {"G_IS"}),
    "I_adv_G": ({"lambda_5": 0.7}, {"G_SI"}),
}


@pytest.mark.parametrize("term", list(TERMS))
def test_each_generator_term_reaches_exactly_its_networks(term):
    lam, expected = TERMS[term]
    m = build("cyclegan", only(**lam))
    terms, _ = m.generator_losses(make_batch())
    assert set(terms) == {"S_gen", term, "G_total"}  # every other λ is 0: absent
    terms[term].backward()
    assert touched(m) == expected
    for d in ("D_S", "D_I"):  # frozen in the generator phase: adversarial grads pass through only
        assert all(p.grad is None and not p.requires_grad for p in m.raw_networks[d].parameters())
    if lam:
        (w,) = lam.values()
        assert terms["G_total"].item() == pytest.approx((terms["S_gen"] + w * terms[term]).item(), rel=1e-6)


def test_all_lambdas_zero_is_supervised_G_IS_only():
    m = build("cyclegan", only())
    counts = count_forwards(m)
    out = m.optimize_parameters(Batch(x=make_batch().x, y=make_batch().y, x_u=None))  # x_u not needed
    assert set(out) == {"S_gen", "G_total"}
    assert counts == {"G_IS": 1, "G_SI": 0, "D_S": 0, "D_I": 0}
    assert touched(m) == {"G_IS"}
    assert m.optimizers["D"].state == {}  # no D step


@pytest.mark.parametrize(
    ("lams", "absent", "forwards"),
    [
        # λ2 = 0: no G_IS(x̂)
        ({"lambda_2": 0}, {"S_cycle"}, {"G_IS": 2, "G_SI": 2, "D_S": 3, "D_I": 3}),
        # λ1 = λ2 = λ5 = 0: no G_SI(onehot(y)); D_I untouched
        ({"lambda_1": 0, "lambda_2": 0, "lambda_5": 0}, {"I_gen", "S_cycle", "I_adv_G", "I_adv_D"},
         {"G_IS": 2, "G_SI": 1, "D_S": 3, "D_I": 0}),
        # λ3 = 0: no G_SI(s_u)
        ({"lambda_3": 0}, {"I_cycle"}, {"G_IS": 3, "G_SI": 1, "D_S": 3, "D_I": 3}),
        # λ4 = 0: no D_S at all
        ({"lambda_4": 0}, {"S_adv_G", "S_adv_D"}, {"G_IS": 3, "G_SI": 2, "D_S": 0, "D_I": 3}),
        # λ3 = λ4 = 0: no G_IS(x_u)
        ({"lambda_3": 0, "lambda_4": 0}, {"I_cycle", "S_adv_G", "S_adv_D"},
         {"G_IS": 2, "G_SI": 1, "D_S": 0, "D_I": 3}),
    ],
)
def test_zero_lambda_skips_term_and_its_forward_passes(lams, absent, forwards):
    m = build("cyclegan", make_cfg(**lams))
    counts = count_forwards(m)
    out = m.optimize_parameters(make_batch())
    everything = {"S_gen", "I_gen", "S_cycle", "I_cycle", "S_adv_G", "I_adv_G", "G_total",
                  "S_adv_D", "I_adv_D", "D_total"}
    assert set(out) == everything - absent
    assert counts == forwards


def test_default_step_forward_counts_and_outputs():
    m = build("cyclegan")
    counts, passes = count_forwards(m), count_passes(m)
    out = m.optimize_parameters(make_batch())
    # G_IS: x, x̂, x_u; G_SI: onehot(y), s_u; each D: 1 (G phase) + real + fake (D phase)
    assert counts == {"G_IS": 3, "G_SI": 2, "D_S": 3, "D_I": 3}
    assert passes == counts  # on CPU every batch has its own pass (merge_passes auto = on CUDA only)
    merged = build("cyclegan", make_cfg(merge_passes=True))
    passes = count_passes(merged)
    merged.optimize_parameters(make_batch())
    # G_IS takes x and x_u in one pass (instance norm: per sample); G_SI not: only s_u needs an input gradient;
    # the discriminators' batch norm would mix real and fake statistics, so they never merge
    assert passes == {"G_IS": 2, "G_SI": 2, "D_S": 3, "D_I": 3}
    assert list(out) == ["S_gen", "I_gen", "S_cycle", "I_cycle", "S_adv_G", "I_adv_G", "G_total",
                         "S_adv_D", "I_adv_D", "D_total"]
    assert all(v.dim() == 0 and not v.requires_grad and v.dtype == torch.float32 for v in out.values())
    cfg = m.cfg
    weighted = (out["S_gen"] + cfg.lambda_1 * out["I_gen"] + cfg.lambda_2 * out["S_cycle"]
                + cfg.lambda_3 * out["I_cycle"] + cfg.lambda_4 * out["S_adv_G"] + cfg.lambda_5 * out["I_adv_G"])
    assert out["G_total"].item() == pytest.approx(weighted.item(), rel=1e-6)
    assert out["D_total"].item() == pytest.approx((out["S_adv_D"] + out["I_adv_D"]).item(), rel=1e-6)
    assert m.iteration == 1


def test_cyclegan_losses_match_an_independent_computation():
    """Every term recomputed from a copy of the initial networks, straight from Eq. 1–7."""
    m = build("cyclegan", make_cfg(lambda_4=0.5))
    ref = copy.deepcopy(m.raw_networks)
    b = make_batch()
    out = m.optimize_parameters(b)
    valid = b.y != 255
    assert not valid.all()  # the batch has ignored pixels, so the mask matters
    with torch.no_grad():
        y1 = one_hot(b.y, 3)
        x_fake = ref["G_SI"](y1)
        unmasked = ((ref["D_S"](y1) - 1) ** 2).mean()
        s_u = torch.softmax(ref["G_IS"](b.x_u), 1)  # softmax probabilities, before the G step
        expected = {
            "S_gen": losses.cross_entropy(ref["G_IS"](b.x), b.y),
            "I_gen": ((x_fake - b.x) ** 2).mean(),
            "S_cycle": losses.cross_entropy(ref["G_IS"](x_fake), b.y),
            "I_cycle": (ref["G_SI"](s_u) - b.x_u).abs().mean(),
            "S_adv_G": ((ref["D_S"](s_u) - 1) ** 2).mean(),
            "I_adv_G": ((ref["D_I"](x_fake) - 1) ** 2).mean(),
            # the D step sees the G step's fakes (detached), not fakes regenerated after it; D_S's real
            # term counts only labeled pixels (255 pixels are all-zero one-hot vectors, not real masks)
            "S_adv_D": 0.5 * (((ref["D_S"](y1) - 1) ** 2)[:, 0][valid].mean() + (ref["D_S"](s_u) ** 2).mean()),
            "I_adv_D": 0.5 * (((ref["D_I"](b.x_u) - 1) ** 2).mean() + (ref["D_I"](x_fake) ** 2).mean()),
        }
    for k, v in expected.items():
        assert out[k].item() == pytest.approx(v.item(), rel=1e-5), k
    assert 0.5 * (unmasked + (ref["D_S"](s_u) ** 2).mean()).item() != pytest.approx(out["S_adv_D"].item(), rel=1e-5)


def test_missing_unlabeled_batch_is_an_error_when_needed():
    b = make_batch()
    with pytest.raises(ValueError, match="x_u"):
        build("cyclegan", only(lambda_3=1.0)).optimize_parameters(Batch(b.x, b.y, None))
    out = build("cyclegan", only(lambda_1=1.0, lambda_2=1.0)).optimize_parameters(Batch(b.x, b.y, None))
    assert set(out) == {"S_gen", "I_gen", "S_cycle", "G_total"}


# --- phase isolation --------------------------------------------------------------------------

def test_G_step_leaves_discriminators_and_D_step_leaves_generators_unchanged():
    m = build("cyclegan")
    gens, discs = ["G_IS", "G_SI"], ["D_S", "D_I"]
    b = make_batch()
    before = snapshot(m, m.raw_networks)
    _, saved = m.optimize_G(b)
    after_g = snapshot(m, m.raw_networks)
    assert same({n: before[n] for n in discs}, {n: after_g[n] for n in discs})  # bit-identical state
    assert not same({"G_IS": before["G_IS"]}, {"G_IS": after_g["G_IS"]})
    assert not same({"G_SI": before["G_SI"]}, {"G_SI": after_g["G_SI"]})
    assert all(p.grad is None for n in discs for p in m.raw_networks[n].parameters())
    m.optimize_D(saved)
    after_d = snapshot(m, m.raw_networks)
    assert same({n: after_g[n] for n in gens}, {n: after_d[n] for n in gens})
    for n in discs:
        assert not same({n: after_g[n]}, {n: after_d[n]})
    assert all(p.requires_grad for n in discs for p in m.raw_networks[n].parameters())


def test_only_lambda_4_trains_D_S_only():
    m = build("cyclegan", only(lambda_4=1.0))
    before = snapshot(m, ["D_S", "D_I"])
    out = m.optimize_parameters(make_batch())
    after = snapshot(m, ["D_S", "D_I"])
    assert set(out) == {"S_gen", "S_adv_G", "G_total", "S_adv_D", "D_total"}
    assert not same({"D_S": before["D_S"]}, {"D_S": after["D_S"]})
    assert same({"D_I": before["D_I"]}, {"D_I": after["D_I"]})


# --- partial / full -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["partial", "full"])
def test_partial_and_full_train_G_IS_with_S_gen(name):
    m = build(name)
    assert list(m.networks) == ["G_IS"] and list(m.optimizers) == ["G"]
    ref = copy.deepcopy(m.raw_networks["G_IS"])
    counts = count_forwards(m)
    b = make_batch()
    out = m.optimize_parameters(Batch(b.x, b.y, None))
    assert set(out) == {"S_gen", "G_total"} and counts == {"G_IS": 1}
    with torch.no_grad():
        assert out["S_gen"].item() == pytest.approx(losses.cross_entropy(ref(b.x), b.y).item(), rel=1e-6)
    assert not torch.equal(ref.model[1].weight, m.raw_networks["G_IS"].model[1].weight)


# --- hung ----------------------------------------------------------------------------------------

def hung_cfg(**kw) -> TrialConfig:
    return make_cfg(method="hung", **kw)


def test_hung_networks_and_optimizers():
    m = build("hung", hung_cfg(hung_d_lr=5e-5, hung_d_beta1=0.8, hung_d_beta2=0.95), INFO32)
    assert list(m.networks) == ["G_IS", "D"]
    grp_g, grp_d = m.optimizers["G"].param_groups[0], m.optimizers["D"].param_groups[0]
    assert (grp_g["lr"], grp_g["betas"]) == (2e-4, (0.5, 0.999))
    assert (grp_d["lr"], grp_d["betas"]) == (5e-5, (0.8, 0.95))


@pytest.mark.parametrize("term", ["adv_G", "semi_adv_G", "semi_G"])
def test_hung_generator_terms_reach_G_IS_with_D_frozen(term):
    # semi_start 0 → self-training from the first iteration; t_semi 0 → no pixel dropped
    m = build("hung", hung_cfg(hung_semi_start=0.0, hung_t_semi=0.0), INFO32)
    terms, _ = m.generator_losses(make_batch(INFO32))
    assert set(terms) == {"S_gen", "adv_G", "semi_adv_G", "semi_G", "G_total"}
    terms[term].backward()
    assert touched(m) == {"G_IS"}
    assert all(p.grad is None and not p.requires_grad for p in m.raw_networks["D"].parameters())
    cfg = m.cfg
    total = (terms["S_gen"] + cfg.hung_lambda_adv * terms["adv_G"] + cfg.hung_lambda_semi_adv * terms["semi_adv_G"]
             + cfg.hung_lambda_semi * terms["semi_G"])
    assert terms["G_total"].item() == pytest.approx(total.item(), rel=1e-6)


def test_hung_self_training_starts_at_semi_start():
    m = build("hung", hung_cfg(hung_semi_start=0.5), INFO32, total_iters=4)
    keys = [set(m.optimize_parameters(make_batch(INFO32, seed=i))) for i in range(4)]
    base = {"S_gen", "adv_G", "semi_adv_G", "G_total", "D_total"}
    assert keys == [base, base, base | {"semi_G"}, base | {"semi_G"}]


def test_hung_losses_match_an_independent_computation():
    m = build("hung", hung_cfg(hung_semi_start=0.0, hung_t_semi=0.0), INFO32)
    ref = copy.deepcopy(m.raw_networks)
    b = make_batch(INFO32)
    counts, passes = count_forwards(m), count_passes(m)
    out = m.optimize_parameters(b)
    assert counts == {"G_IS": 2, "D": 5}  # G: D(p_l), D(p_u); D step: fakes (p_l and p_u), real
    assert passes == {"G_IS": 2, "D": 4}  # D step: the fakes in one pass, as Hung's code
    with torch.no_grad():
        valid = b.y != 255
        logits_l, logits_u = ref["G_IS"](b.x), ref["G_IS"](b.x_u)
        p_l, p_u = torch.softmax(logits_l, 1), torch.softmax(logits_u, 1)
        d_l, d_u, d_gt = ref["D"](p_l), ref["D"](p_u), ref["D"](one_hot(b.y, 3))
        sp = torch.nn.functional.softplus  # BCE(d, 1) = softplus(−d), BCE(d, 0) = softplus(d)
        v = valid.unsqueeze(1)
        expected = {
            "S_gen": losses.cross_entropy(logits_l, b.y),
            "adv_G": sp(-d_l)[v].mean(),
            "semi_adv_G": sp(-d_u).mean(),
            "semi_G": torch.nn.functional.cross_entropy(logits_u, logits_u.argmax(1)),  # T=0: nothing dropped
            "D_total": 0.5 * (torch.cat([sp(d_l)[v], sp(d_u).flatten()]).mean() + sp(-d_gt)[v].mean()),
        }
    for k, val in expected.items():
        assert out[k].item() == pytest.approx(val.item(), rel=1e-5), k


def test_hung_confidence_threshold_drops_pixels():
    m = build("hung", hung_cfg(hung_semi_start=0.0, hung_t_semi=1.0), INFO32)  # σ(D) < 1 everywhere
    terms, _ = m.generator_losses(make_batch(INFO32))
    assert terms["semi_G"].item() == 0.0


def test_hung_pseudo_labels_hand_values():
    logits = torch.tensor([[[[2.0, 0.0]], [[1.0, 3.0]]]])  # (1, 2, 1, 2): argmax (0, 1)
    d = torch.tensor([[[[0.0, -2.0]]]])  # σ = (0.5, 0.119)
    assert hung_pseudo_labels(logits, d, 0.2).tolist() == [[[0, 255]]]
    assert hung_pseudo_labels(logits, d, 0.1).tolist() == [[[0, 1]]]
    assert hung_pseudo_labels(logits, d, 0.6).tolist() == [[[255, 255]]]


def test_hung_phases_are_isolated():
    m = build("hung", hung_cfg(), INFO32)
    before = snapshot(m, ["G_IS", "D"])
    _, saved = m.optimize_G(make_batch(INFO32))
    mid = snapshot(m, ["G_IS", "D"])
    m.optimize_D(saved)
    after = snapshot(m, ["G_IS", "D"])
    assert same({"D": before["D"]}, {"D": mid["D"]}) and not same({"D": mid["D"]}, {"D": after["D"]})
    assert same({"G": mid["G_IS"]}, {"G": after["G_IS"]}) and not same({"G": before["G_IS"]}, {"G": mid["G_IS"]})


# --- checkpoints, predict, compile ------------------------------------------------------------

@pytest.mark.parametrize("name", ["cyclegan", "hung", "partial"])
def test_state_dict_round_trip_continues_identically(name):
    info = INFO32 if name == "hung" else INFO
    cfg = make_cfg(method=name, hung_semi_start=0.5)
    a = build(name, cfg, info, total_iters=2)
    a.optimize_parameters(make_batch(info, seed=1))
    b = build(name, cfg, info, seed=7, total_iters=2)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert b.iteration == 1
    out_a, out_b = a.optimize_parameters(make_batch(info, seed=2)), b.optimize_parameters(make_batch(info, seed=2))
    assert out_a.keys() == out_b.keys() and all(torch.equal(out_a[k], out_b[k]) for k in out_a)
    assert same(snapshot(a, a.raw_networks), snapshot(b, b.raw_networks))


def test_predict_returns_fp32_logits():
    m = build("cyclegan", make_cfg(channels_last=True))
    x = make_batch().x
    logits = m.predict(x)
    assert logits.shape == (2, 3, 16, 16) and logits.dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(logits, m.raw_networks["G_IS"](x), atol=1e-5)


def test_compile_wraps_networks_but_checkpoints_stay_plain():
    m = build("partial", make_cfg(compile=True))  # torch.compile is lazy: nothing compiles here
    assert m.networks["G_IS"] is not m.raw_networks["G_IS"]
    assert not any(k.startswith("_orig_mod") for k in m.state_dict()["networks"]["G_IS"])


# --- the optimized path computes the same numbers ---------------------------------------------

@pytest.mark.parametrize(("name", "info"), [("cyclegan", INFO), ("hung", INFO32)])
def test_fast_path_matches_plain_fp32_reference(name, info):
    """channels_last + foreach Adam vs contiguous + for-loop Adam, same init, two steps.

    Tolerances: channels_last convolutions on CPU use other kernels with another summation order,
    so losses and gradients differ by fp32 rounding (~1e-7 relative); losses must agree to
    rtol 1e-4 / atol 1e-5, first-step gradients to 1e-4 of each tensor's largest entry, Adam's steps
    (≈ lr·g/|g|, lr 2e-4) carry the rounding over to parameters at ~1e-8, so parameters must agree
    to rtol 1e-4 / atol 1e-5 (one lr step is 2e-4, so a wrong update would show).
    One exception is real: where the true gradient is 0 — e.g. a D_S first-layer bias at init
    whose channel stays on one side of the LeakyReLU over the whole batch, so the batch norm after
    the next 1×1 conv cancels it — the computed gradient is rounding noise and Adam turns it into
    a step of up to lr with an arbitrary sign. Elements whose gradients differ by more than 1 %
    between the paths may therefore differ by up to 2·lr per step; they must stay rare (< 1 %).
    (The generators have no such parameters: no bias before an affine-free instance norm.)
    """
    kw = dict(method=name, hung_semi_start=0.0, hung_t_semi=0.0)
    fast = build(name, make_cfg(channels_last=True, **kw), info)
    with pytest.MonkeyPatch.context() as mp:  # the reference: torch's plain for-loop Adam
        mp.setattr(methods_module, "adam_options", lambda device: {"foreach": False})
        plain = build(name, make_cfg(channels_last=False, **kw), info)
    assert fast.optimizers["G"].param_groups[0]["foreach"] is True
    assert plain.optimizers["G"].param_groups[0]["foreach"] is False
    assert fast.raw_networks["G_IS"].model[1].weight.is_contiguous(memory_format=torch.channels_last)

    def params(m: Method) -> dict[str, torch.Tensor]:
        return {f"{n}.{k}": p for n, net in m.raw_networks.items() for k, p in net.named_parameters()}

    pf, pp = params(fast), params(plain)
    noise = {k: torch.zeros_like(p, dtype=torch.bool) for k, p in pp.items()}
    steps = 2
    for step in range(steps):
        b = make_batch(info, seed=10 + step)
        out_f, out_p = fast.optimize_parameters(b), plain.optimize_parameters(b)
        assert out_f.keys() == out_p.keys()
        for k in out_f:
            torch.testing.assert_close(out_f[k], out_p[k], rtol=1e-4, atol=1e-5, msg=f"step {step} {k}")
        for k in noise:  # grads of this step's G and D phases are still in place
            gf, gp = pf[k].grad, pp[k].grad
            assert (gf is None) == (gp is None), k
            if gp is None:
                continue
            if step == 0:  # same parameters: the gradients themselves must agree
                tol = 1e-4 * gp.abs().max().item()
                assert (gf - gp).abs().max() <= tol, f"grad {k}"
            noise[k] |= (gf - gp).abs() > 1e-2 * gp.abs()
    lr = plain.cfg.lr
    for k, p in pp.items():
        diff = (pf[k].detach() - p.detach()).abs()
        ok = (diff <= 1e-5 + 1e-4 * p.detach().abs()) | (noise[k] & (diff <= 2 * lr * steps))
        assert ok.all(), f"{k}: max diff {diff.max().item():.3g}"
    n_noise = sum(int(m.sum()) for m in noise.values())
    assert n_noise < 0.01 * sum(p.numel() for p in pp.values())


@pytest.mark.parametrize(("name", "extra", "per_sample", "merged"), [
    # the paper: batch-norm discriminators never merge; G_SI's y and s_u differ in needing an input gradient
    ("cyclegan", {}, {"G_IS", "G_SI"}, {"G_IS"}),
    ("cyclegan", {"d_norm": "instance", "discriminator": "patch", "d_depth": 1},
     {"G_IS", "G_SI", "D_S", "D_I"}, {"G_IS", "D_S", "D_I"}),
    ("hung", {"hung_semi_start": 0.0, "hung_t_semi": 0.0}, {"G_IS", "D"}, {"G_IS", "D"}),
])
def test_merged_passes_give_the_numbers_of_one_pass_each(name, extra, per_sample, merged):
    """A network without batch statistics takes two batches in one pass: the same arithmetic as two passes,
    so the losses, every gradient of the step and the weights after two steps agree to 1e-5 (fp32 rounding
    of another batch size's kernels is ~1e-7)."""
    fast = build(name, make_cfg(method=name, merge_passes=True, **extra), INFO32)
    ref = build(name, make_cfg(method=name, merge_passes=False, **extra), INFO32)  # one pass per batch
    assert {n for n, yes in fast.per_sample.items() if yes} == per_sample
    passes_fast, passes_ref = count_passes(fast), count_passes(ref)
    for step in range(2):
        b = make_batch(INFO32, seed=20 + step)
        out_f, out_r = fast.optimize_parameters(b), ref.optimize_parameters(b)
        assert out_f.keys() == out_r.keys()
        for k in out_f:
            torch.testing.assert_close(out_f[k], out_r[k], rtol=1e-5, atol=1e-6, msg=f"step {step} {k}")
        for n, net in ref.raw_networks.items():
            for (k, p), q in zip(net.named_parameters(), fast.raw_networks[n].parameters(), strict=True):
                if step == 0 and p.grad is not None:  # the step's G and D gradients are still in place
                    scale = p.grad.abs().max().item()
                    assert (q.grad - p.grad).abs().max().item() <= 1e-5 * scale + 1e-9, f"grad {n}.{k}"
                torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-5, msg=f"step {step} {n}.{k}")
    assert all(passes_fast[n] < passes_ref[n] for n in merged)
    assert all(passes_fast[n] == passes_ref[n] for n in fast.raw_networks if n not in merged)


def test_merge_passes_auto_is_on_for_cuda_only():
    assert TrialConfig(merge_passes="auto").merge_passes is None  # "auto" is how a YAML file says it
    assert build("cyclegan", make_cfg(merge_passes=None)).merge_passes is False  # CPU
    meta = METHODS.get("cyclegan")(make_cfg(merge_passes=None), INFO, torch.device("meta"), 10)
    assert meta.merge_passes is False
    with pytest.MonkeyPatch.context() as mp:  # the rule reads the device's type only: a CUDA device object will do
        mp.setattr(torch.nn.Module, "to", lambda self, *a, **k: self)
        assert METHODS.get("partial")(make_cfg(merge_passes=None), INFO, torch.device("cuda"), 10).merge_passes


# --- cyclegan: the GAN levers (config GAN_FIELDS) ------------------------------------------------

def g_is_grad(m: Method, loss: torch.Tensor) -> list[torch.Tensor]:
    """G_IS's gradient of ``loss`` (zeros where the loss does not reach a parameter)."""
    params = list(m.raw_networks["G_IS"].parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def d_inputs(m: Method, name: str) -> list[torch.Tensor]:
    """Every input discriminator ``name`` receives from now on."""
    seen: list[torch.Tensor] = []
    m.raw_networks[name].register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    return seen


def test_detached_argmax_gives_G_IS_no_gradient_from_lambda_4_and_D_S_still_learns():
    with_l4 = build("cyclegan", only(lambda_4=1.0, d_s_input="detached_argmax"))
    without = build("cyclegan", only(d_s_input="detached_argmax"))
    b = make_batch()
    terms, _ = with_l4.generator_losses(b)
    assert terms["S_adv_G"].item() > 0  # the term is computed and logged ...
    assert not terms["S_adv_G"].requires_grad  # ... but no parameter's gradient can come from it
    total_without, _ = without.generator_losses(b)
    assert all(torch.equal(a, c) for a, c in zip(g_is_grad(with_l4, terms["G_total"]),
                                                 g_is_grad(without, total_without["G_total"]), strict=True))
    m = build("cyclegan", only(lambda_4=1.0, d_s_input="detached_argmax"))
    before = snapshot(m, ["D_S"])
    out = m.optimize_parameters(b)
    assert "S_adv_D" in out and not same(before, snapshot(m, ["D_S"]))  # D_S is trained on the hard maps


def test_softmax_default_sends_lambda_4_gradient_to_G_IS():
    m = build("cyclegan", only(lambda_4=1.0))
    terms, _ = m.generator_losses(make_batch())
    assert sum(g.abs().sum() for g in g_is_grad(m, terms["S_adv_G"])) > 0


def test_straight_through_feeds_D_S_an_exact_one_hot_and_moves_G_IS():
    m = build("cyclegan", only(lambda_4=1.0, d_s_input="straight_through"))
    seen = d_inputs(m, "D_S")
    terms, _ = m.generator_losses(make_batch())
    (x,) = seen
    assert set(x.unique().tolist()) == {0.0, 1.0} and torch.equal(x.sum(1), torch.ones_like(x.sum(1)))
    assert sum(g.abs().sum() for g in g_is_grad(m, terms["S_adv_G"])) > 0


def test_gumbel_feeds_D_S_a_noisy_distribution_at_its_temperature():
    cold, hot = (build("cyclegan", only(lambda_4=1.0, d_s_input="gumbel", gumbel_tau=t)) for t in (0.05, 5.0))
    b = make_batch()
    peaks = []
    for m in (cold, hot):
        seen = d_inputs(m, "D_S")
        terms, _ = m.generator_losses(b)
        (x,) = seen
        assert torch.allclose(x.sum(1), torch.ones_like(x.sum(1)), atol=1e-5)  # a distribution per pixel
        assert sum(g.abs().sum() for g in g_is_grad(m, terms["S_adv_G"])) > 0
        peaks.append(x.max(1).values.mean().item())
    assert peaks[0] > 0.95 and peaks[1] < 0.6  # low τ: nearly one-hot; high τ: nearly uniform over 3 classes


@pytest.mark.parametrize("sigma", [0.3, 1.5])
def test_instance_noise_shows_in_every_discriminator_input(sigma):
    b = make_batch(b=4)
    clean, noisy = build("cyclegan", make_cfg()), build("cyclegan", make_cfg(instance_noise=sigma))
    inputs = {}
    for key, m in (("clean", clean), ("noisy", noisy)):
        inputs[key] = {n: d_inputs(m, n) for n in ("D_S", "D_I")}
        torch.manual_seed(5)
        m.optimize_parameters(b)
    for n in ("D_S", "D_I"):
        # G phase (generated), D phase (real, then generated): in the first step every clean input is the same
        # in both runs, so each noisy input minus its clean twin is the noise alone
        assert len(inputs["noisy"][n]) == len(inputs["clean"][n]) == 3
        for clean_in, noisy_in in zip(inputs["clean"][n], inputs["noisy"][n], strict=True):
            assert (noisy_in - clean_in).std().item() == pytest.approx(sigma, rel=0.05)
            assert (noisy_in - clean_in).mean().abs().item() < 0.05 * sigma


def test_instance_noise_anneals_linearly_to_zero():
    m = build("cyclegan", make_cfg(instance_noise=0.4, instance_noise_anneal=True), total_iters=8)
    sigmas = []
    for i in range(8):
        m.iteration = i
        sigmas.append(m.noise_sigma())
    assert sigmas == pytest.approx([0.4 * (1 - i / 8) for i in range(8)])
    assert build("cyclegan", make_cfg(instance_noise=0.4)).noise_sigma() == 0.4


def test_real_label_smoothing_lowers_only_the_discriminators_real_target():
    b = make_batch()
    plain = build("cyclegan", only(lambda_5=1.0))
    smooth = build("cyclegan", only(lambda_5=1.0, real_label_smoothing=0.2))
    g_plain, saved = plain.generator_losses(b)
    g_smooth, _ = smooth.generator_losses(b)
    assert torch.equal(g_plain["I_adv_G"], g_smooth["I_adv_G"])  # generators still aim at 1 (one-sided)
    d_real = smooth.raw_networks["D_I"](saved["x_u"]).detach()
    d_fake = smooth.raw_networks["D_I"](saved["x_fake"]).detach()
    out = smooth.optimize_D(saved)
    expected = 0.5 * (((d_real - 0.8) ** 2).mean() + (d_fake**2).mean())
    assert out["I_adv_D"].item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize(("kind", "extra"), [("pixel", {}), ("patch", {"d_depth": 2}), ("hung", {})])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_discriminator_choice_builds_both_discriminators_and_trains(kind, extra, norm):
    m = build("cyclegan", make_cfg(discriminator=kind, d_norm=norm, **extra), info=INFO32)
    expected = {"pixel": "PixelDiscriminator", "patch": "PatchDiscriminator", "hung": "HungDiscriminator"}[kind]
    assert {type(m.raw_networks[n]).__name__ for n in ("D_S", "D_I")} == {expected}
    norms = {type(mod).__name__ for mod in m.raw_networks["D_S"].modules() if "Norm" in type(mod).__name__}
    assert norms == (set() if kind == "hung" else {"BatchNorm2d" if norm == "batch" else "InstanceNorm2d"})
    before = snapshot(m, ["D_S", "D_I"])
    out = m.optimize_parameters(make_batch(INFO32))
    assert all(torch.isfinite(v) for v in out.values()) and not same(before, snapshot(m, ["D_S", "D_I"]))


def test_discriminator_too_deep_for_the_image_is_refused_with_the_fix():
    with pytest.raises(UserError, match=r"d_depth=3 needs images at least 24 px.*set d_depth <= 2"):
        build("cyclegan", make_cfg(discriminator="patch", d_depth=3))  # INFO is 16x16
    with pytest.raises(UserError, match="discriminator 'hung' needs images at least 32x32"):
        build("cyclegan", make_cfg(discriminator="hung"))


def test_d_lr_ratio_sets_only_the_discriminators_learning_rate():
    m = build("cyclegan", make_cfg(lr=3e-4, d_lr_ratio=0.25))
    assert m.optimizers["G"].param_groups[0]["lr"] == 3e-4
    assert m.optimizers["D"].param_groups[0]["lr"] == pytest.approx(7.5e-5)


def test_history_pool_fills_then_swaps_with_its_probability():
    pool = methods_module.HistoryPool(size=3, prob=0.5)
    batches = [torch.full((2, 1), float(i)) for i in range(400)]
    out = [pool.query(b) for b in batches[:3]]
    assert all(o is b for o, b in zip(out, batches[:3], strict=True)) and len(pool.items) == 3  # filling
    torch.manual_seed(0)
    old = sum(pool.query(b) is not b for b in batches[3:])
    assert old / 397 == pytest.approx(0.5, abs=0.08)  # an old batch about half the time
    assert len(pool.items) == 3 and len({id(t) for t in pool.items}) == 3
    off = methods_module.HistoryPool(size=0, prob=1.0)
    assert off.query(batches[0]) is batches[0] and off.items == []


def test_pool_feeds_discriminators_old_batches_and_is_checkpointed():
    m = build("cyclegan", make_cfg(pool_size=2, pool_prob=1.0))
    m.optimize_parameters(make_batch(seed=1))
    m.optimize_parameters(make_batch(seed=2))  # the pools are full now
    stored = m.pools["D_S"].items[:]
    seen = d_inputs(m, "D_S")
    m.optimize_parameters(make_batch(seed=3))
    fake_in_d_phase = seen[2]
    assert any(torch.equal(fake_in_d_phase, t) for t in stored)  # prob 1: an old batch, not this step's
    state = m.state_dict()
    n = build("cyclegan", make_cfg(pool_size=2, pool_prob=1.0))
    n.load_state_dict(state)
    assert all(torch.equal(a, c) for a, c in zip(m.pools["D_I"].items, n.pools["D_I"].items, strict=True))


def test_rampup_factor_is_laine_and_ailas_sigmoid_after_the_warmup():
    f = methods_module.rampup_factor
    assert [f(e, 2, 0) for e in (1, 2, 3, 9)] == [0.0, 0.0, 1.0, 1.0]
    # warm-up 1, ramp 4: epochs 2..5 at t = 0, 1/4, 2/4, 3/4, then 1
    import math
    assert [f(e, 1, 4) for e in range(1, 8)] == pytest.approx(
        [0.0, math.exp(-5), math.exp(-5 * 0.75**2), math.exp(-5 * 0.25), math.exp(-5 * 0.25**2), 1.0, 1.0])


def test_warmup_trains_supervised_only_and_counts_no_unlabeled_draws():
    m = build("cyclegan", make_cfg(unsup_warmup_epochs=1))
    m.set_epoch(1)
    counts = count_forwards(m)
    out = m.optimize_parameters(make_batch())
    assert set(out) == {"S_gen", "I_gen", "G_total"}  # λ1 (supervised) stays; λ2…λ5 act as 0
    assert counts == {"G_IS": 1, "G_SI": 1, "D_S": 0, "D_I": 0} and m.unlabeled_steps == 0
    assert m.effective_weights() == {"lambda_2": 0.0, "lambda_3": 0.0, "lambda_4": 0.0, "lambda_5": 0.0}
    m.set_epoch(2)
    assert m.effective_weights() == {"lambda_2": 0.05, "lambda_3": 1.0, "lambda_4": 1.0, "lambda_5": 1.0}
    assert "S_adv_D" in m.optimize_parameters(make_batch()) and m.unlabeled_steps == 1


def test_real_label_smoothing_applies_to_D_S_real_side_within_its_mask():
    b = make_batch()
    m = build("cyclegan", only(lambda_4=1.0, real_label_smoothing=0.3))
    _, saved = m.generator_losses(b)
    d_real = m.raw_networks["D_S"](saved["y_onehot"]).detach()
    d_fake = m.raw_networks["D_S"](saved["s_u"]).detach()
    out = m.optimize_D(saved)
    valid = saved["y_valid"].unsqueeze(1)
    real_term = ((d_real - 0.7) ** 2)[valid].mean()  # ignored pixels left out, target 1 − 0.3
    assert out["S_adv_D"].item() == pytest.approx((0.5 * (real_term + (d_fake**2).mean())).item(), rel=1e-5)


@pytest.mark.parametrize("kind", ["patch", "hung"])
def test_a_shape_seeing_D_S_never_sees_the_ignore_rim_as_all_zero_vectors(kind):
    b = make_batch(INFO32)
    assert (b.y == 255).any()
    m = build("cyclegan", only(lambda_4=1.0, discriminator=kind), info=INFO32)
    seen = d_inputs(m, "D_S")
    m.optimize_parameters(b)
    real = seen[1]  # the D phase's real input
    valid = (b.y != 255).unsqueeze(1)
    assert torch.equal(real * valid, one_hot(b.y, 3) * valid)  # the ground truth where there is one
    assert torch.allclose(real.sum(1), torch.ones_like(real.sum(1)))  # a distribution everywhere: no zero rim
    pixel = build("cyclegan", only(lambda_4=1.0), info=INFO32)  # the paper's 1x1 D scores pixels alone: as before
    seen = d_inputs(pixel, "D_S")
    pixel.optimize_parameters(b)
    assert torch.equal(seen[1], one_hot(b.y, 3))


def test_the_paper_as_written_gives_the_numbers_it_gave_before_the_levers_existed():
    """Pinned on main before the GAN levers (commit 0b736d0): two default cyclegan steps on the toy batches.
    Every lever at its default must leave each loss and the weights where they were (CPU, fp32)."""
    m = build("cyclegan", make_cfg())
    m.optimize_parameters(make_batch(seed=1))
    out = {k: v.item() for k, v in m.optimize_parameters(make_batch(seed=2)).items()}
    assert out == pytest.approx({
        "S_gen": 1.1081660985946655, "I_gen": 0.36522069573402405, "S_cycle": 1.1059669256210327,
        "I_cycle": 0.507513165473938, "S_adv_G": 0.9993997812271118, "I_adv_G": 0.9965780377388,
        "G_total": 4.0321760177612305, "S_adv_D": 0.49742284417152405, "I_adv_D": 0.495039165019989,
        "D_total": 0.9924620389938354}, rel=1e-5)  # not bit for bit: another torch build may round differently
    with torch.no_grad():
        sums = [sum(p.sum() for p in m.raw_networks[n].parameters()).item() for n in ("G_IS", "D_S")]
    assert sums == pytest.approx([-0.2485482394695282, 8.06873607635498], rel=1e-5)


def test_the_builtin_method_names_help_texts_show_are_the_registered_ones():
    from cycleseg.model.config import BUILTIN_METHODS

    builtin = [n for n in METHODS if METHODS.get(n).__module__ == methods_module.__name__]  # not a plugin's
    assert sorted(builtin) == sorted(BUILTIN_METHODS)
