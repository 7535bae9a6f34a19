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


def count_forwards(m: Method) -> dict[str, int]:
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
    counts = count_forwards(m)
    out = m.optimize_parameters(make_batch())
    # G_IS: x, x̂, x_u; G_SI: onehot(y), s_u; each D: 1 (G phase) + real + fake (D phase)
    assert counts == {"G_IS": 3, "G_SI": 2, "D_S": 3, "D_I": 3}
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
    counts = count_forwards(m)
    out = m.optimize_parameters(b)
    assert counts == {"G_IS": 2, "D": 4}  # G: D(p_l), D(p_u); D step: fakes (one pass), real
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
