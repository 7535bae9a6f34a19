"""The trial runner: per-epoch metrics, checkpoints, bit-exact resume, divergence, lr schedule."""

import math

import pytest
import torch

import tests.faults  # noqa: F401  (registers the fault_* methods)
from cycleseg.model import checkpoint
from cycleseg.model.checkpoint import load_trial
from cycleseg.model.data import normalize_images, prepare_dataset
from cycleseg.model.methods import METHODS, create_method
from cycleseg.model.resolve import resolve_config
from cycleseg.model.trainer import EpochBatches, evaluate, lr_factor, run_trial

CHECKPOINT = checkpoint.FOLDER

TINY = {
    "dataset": "digits", "preset": "tiny", "digits_train": 24, "digits_val": 8, "digits_test": 8,
    "image_height": 32, "image_width": 32, "epochs": 2, "labeled_fraction": 0.25, "device": "cpu",
}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))


def test_lr_schedule_matches_the_papers_400_epoch_rule():
    cfg = resolve_config({"epochs": 400})
    # constant for 100 epochs, then 1 - (e - 100) / 300 (authors' LambdaLR)
    assert lr_factor(0, cfg) == 1.0 and lr_factor(100, cfg) == 1.0
    assert lr_factor(250, cfg) == pytest.approx(0.5)
    assert lr_factor(399, cfg) == pytest.approx(1 / 300)


def test_epoch_covers_the_larger_set_and_batches_are_full():
    cfg = resolve_config(TINY)
    data = prepare_dataset(cfg)
    b = EpochBatches(data, cfg, uses_unlabeled=True, device=torch.device("cpu"))
    assert len(b.labeled) == 6 and len(b.unlabeled) == 18  # 25 % of 24, the rest unlabeled
    assert set(b.labeled.tolist()).isdisjoint(b.unlabeled.tolist())
    batches = list(b.epoch(1))
    assert len(batches) == math.ceil(18 / 5) == b.iters_per_epoch
    assert all(x.x.shape[0] == 5 and x.x_u.shape[0] == 5 for x in batches)
    assert torch.equal(batches[0].x, next(iter(b.epoch(1))).x)  # order is a function of (seed, epoch)
    assert not torch.equal(batches[0].x, next(iter(b.epoch(2))).x)


def test_every_method_runs_the_same_steps_and_labeled_batches_cycle():
    """Equal budgets: ceil(max(6 labeled, 18 unlabeled) / 5) = 4 steps per epoch whatever the method uses."""
    cfg = resolve_config(TINY)
    data = prepare_dataset(cfg)
    partial = EpochBatches(data, cfg, uses_unlabeled=False, device=torch.device("cpu"))
    assert partial.unlabeled is None and partial.iters_per_epoch == 4
    batches = list(partial.epoch(1))
    assert len(batches) == 4 and all(x.x.shape[0] == 5 and x.x_u is None for x in batches)
    # 20 labeled draws from 6 images: every image comes 3 or 4 times (whole passes, each reshuffled)
    labeled = {i: img for i, img in enumerate(torch.as_tensor(data.train_images)[partial.labeled])}
    seen = torch.cat([x.x for x in batches])
    counts = [sum(torch.equal(s, normalize_images(img[None])[0]) for s in seen) for img in labeled.values()]
    assert sorted(counts) == [3, 3, 3, 3, 4, 4]
    # full: every image labeled, no unlabeled set: ceil(24 / 5) = 5
    full = EpochBatches(data, resolve_config({**TINY, "method": "full"}), uses_unlabeled=False,
                        device=torch.device("cpu"))
    assert len(full.labeled) == 24 and full.iters_per_epoch == 5


def test_budget_is_recorded_and_equal_across_methods(tmp_path):
    hists = {m: run_trial(resolve_config({**TINY, "method": m}), workdir=tmp_path / m)
             for m in ("partial", "cyclegan", "hung")}
    for m, hist in hists.items():
        # 4 steps per epoch (see above), 5 labeled images per step, 5 unlabeled for the methods that use them
        assert [h["steps"] for h in hist] == [4, 8], m
        assert [h["labeled_images_seen"] for h in hist] == [20, 40], m
        assert [h["unlabeled_images_seen"] for h in hist] == ([0, 0] if m == "partial" else [20, 40]), m


def test_unlabeled_images_count_only_where_a_network_saw_them(tmp_path):
    # cyclegan with λ3 = λ4 = λ5 = 0 never feeds x_u; hung without its semi-adversarial term feeds it only
    # once self-training is on (from half of the 8 iterations: 4 steps × 5 images)
    off = {"method": "cyclegan", "lambda_3": 0.0, "lambda_4": 0.0, "lambda_5": 0.0}
    late = {"method": "hung", "hung_lambda_semi_adv": 0.0, "hung_semi_start": 0.5}
    for fields, seen in ((off, [0, 0]), (late, [0, 20])):
        hist = run_trial(resolve_config({**TINY, **fields}), workdir=tmp_path / fields["method"])
        assert [h["steps"] for h in hist] == [4, 8]  # the budget in steps is the same
        assert [h["unlabeled_images_seen"] for h in hist] == seen, fields


def test_evaluation_runs_every_network_in_eval_mode_and_restores_it(tmp_path):
    cfg = resolve_config({**TINY, "method": "cyclegan"})
    data = prepare_dataset(cfg)
    method = create_method(cfg, data.info, torch.device("cpu"), total_iters=1)
    modes = []
    method.raw_networks["G_IS"].register_forward_hook(lambda m, i, o: modes.append(m.training))
    cm = evaluate(method, data.val_images, data.val_masks, batch_size=3)
    assert modes == [False, False, False]  # 8 val images in batches of 3
    assert int(cm.mat.sum()) == 8 * 32 * 32 - int((torch.as_tensor(data.val_masks) == 255).sum())
    assert all(net.training for net in method.raw_networks.values())


def test_val_and_test_are_evaluated_every_epoch(tmp_path):
    hist = run_trial(resolve_config({**TINY, "epochs": 1}), workdir=tmp_path)
    cfg = resolve_config(TINY)
    data = prepare_dataset(cfg)
    _, method, epoch = load_trial(tmp_path / CHECKPOINT)
    assert epoch == 1
    for split in ("val", "test"):
        cm = evaluate(method, *data.split(split), cfg.eval_batch_size)
        assert hist[0][f"{split}_miou"] == pytest.approx(cm.miou())
        assert hist[0][f"{split}_class_iou"] == pytest.approx(cm.class_iou(), nan_ok=True)
    assert hist[0]["val_miou"] != hist[0]["test_miou"]  # two different splits


def test_run_reports_every_epoch_with_all_terms(tmp_path):
    seen = []

    class Rec:
        def report(self, metrics, checkpoint_dir):
            assert (checkpoint_dir / "state.pt").is_file()
            seen.append(metrics)

    hist = run_trial(resolve_config(TINY), workdir=tmp_path, reporter=Rec())
    assert [m["epoch"] for m in hist] == [1, 2] and seen == hist
    keys = {"loss_S_gen", "loss_I_gen", "loss_S_cycle", "loss_I_cycle", "loss_S_adv_G", "loss_I_adv_G",
            "loss_G_total", "loss_S_adv_D", "loss_I_adv_D"}
    assert keys <= set(hist[0])
    assert 0.0 <= hist[-1]["val_miou"] <= 1.0 and len(hist[-1]["val_class_iou"]) == 11
    assert hist[0]["lr"] == pytest.approx(2e-4) and not hist[-1]["diverged"]


def crash_resume_and_compare(tmp_path, layer: dict) -> tuple[list[dict], list[dict]]:
    """``layer`` trained straight and, as ``fault_crash_2``, crashed in epoch 2 then resumed: the networks must
    match bit for bit; returns both histories."""
    straight = tmp_path / "a"
    run_trial(resolve_config({**TINY, **layer}), workdir=straight)
    broken = tmp_path / "b"
    crash = resolve_config({**TINY, **layer, "method": "fault_crash_2"})
    with pytest.raises(RuntimeError, match="injected crash"):
        run_trial(crash, workdir=broken)
    assert checkpoint.load_state(broken / CHECKPOINT)["epoch"] == 1
    hist = run_trial(crash, workdir=broken, resume=True)
    assert [m["epoch"] for m in hist] == [1, 2]
    a = checkpoint.load_state(straight / CHECKPOINT)["method"]["networks"]  # the latest networks
    b = checkpoint.load_state(broken / CHECKPOINT)["method"]["networks"]
    for name, net in a.items():
        for (k, p), q in zip(net.items(), b[name].values(), strict=True):
            assert torch.equal(p, q), f"{name}.{k} differs after resume"
    return checkpoint.read_history(straight / CHECKPOINT), checkpoint.read_history(broken / CHECKPOINT)


def test_resume_is_bit_exact_on_cpu(tmp_path):
    sa, sb = crash_resume_and_compare(tmp_path, {})
    assert [m["loss_G_total"] for m in sa] == [m["loss_G_total"] for m in sb]


def test_nan_stops_the_run_as_diverged(tmp_path):
    hist = run_trial(resolve_config({**TINY, "epochs": 3, "method": "fault_nan_1"}), workdir=tmp_path)
    assert len(hist) == 1 and hist[0]["diverged"]
    assert not math.isfinite(hist[0]["loss_G_total"])


@pytest.mark.parametrize("method", [m for m in METHODS.names() if not m.startswith("fault_")])
def test_every_method_trains_and_logs_its_terms(tmp_path, method):
    hist = run_trial(resolve_config({**TINY, "method": method, "epochs": 1}), workdir=tmp_path)
    assert hist[0]["loss_S_gen"] > 0 and math.isfinite(hist[0]["val_miou"])
    logged = {k[len("loss_"):] for k in hist[0] if k.startswith("loss_")}
    assert logged <= set(METHODS.get(method).LOSS_TERMS) and {"S_gen", "G_total"} <= logged


def test_effective_lambdas_follow_the_warmup_and_rampup_formula_each_epoch(tmp_path):
    cfg = resolve_config({**TINY, "epochs": 4, "lambda_4": 0.5, "unsup_warmup_epochs": 1, "unsup_rampup_epochs": 2})
    hist = run_trial(cfg, workdir=tmp_path)
    # epoch 1: warm-up (0); epoch 2: t = 0 → e^-5; epoch 3: t = 1/2 → e^-1.25; epoch 4: t = 1 → 1
    factors = [0.0, math.exp(-5), math.exp(-1.25), 1.0]
    for rec, f in zip(hist, factors, strict=True):
        assert rec["lambda_2_effective"] == pytest.approx(0.05 * f)
        assert rec["lambda_4_effective"] == pytest.approx(0.5 * f)
        assert rec["lambda_3_effective"] == rec["lambda_5_effective"] == pytest.approx(f)
    assert "loss_S_adv_G" not in hist[0] and "loss_S_adv_G" in hist[1]  # the warm-up is supervised only
    assert hist[0]["unlabeled_images_seen"] == 0 < hist[1]["unlabeled_images_seen"]
    assert hist[0]["steps"] == hist[1]["steps"] - hist[0]["steps"]  # the budget does not change


def test_resume_is_bit_exact_with_every_random_lever(tmp_path):
    """Gumbel noise, instance noise and the history pool draw from the RNG and hold state: a resume still matches."""
    levers = {"d_s_input": "gumbel", "instance_noise": 0.1, "instance_noise_anneal": True, "pool_size": 2,
              "discriminator": "patch", "unsup_rampup_epochs": 2, "real_label_smoothing": 0.1, "d_lr_ratio": 0.5}
    sa, sb = crash_resume_and_compare(tmp_path, levers)
    assert [m["loss_D_total"] for m in sa] == [m["loss_D_total"] for m in sb]


def test_the_checkpoint_keeps_the_networks_of_the_epoch_the_run_reports(tmp_path):
    """With select=best_val the reported epoch is often not the latest: its networks are kept beside the latest
    state (reported.pt, tensors only), and load_trial (sample grids, tracking) rebuilds them, not the latest."""
    cfg = resolve_config({**TINY, "epochs": 3})
    data = prepare_dataset(cfg)
    method = create_method(cfg, data.info, torch.device("cpu"), total_iters=1)
    folder = tmp_path / CHECKPOINT
    weights = []
    history = []
    for epoch, val in enumerate([0.30, 0.20, 0.25], 1):  # epoch 1 stays the best on val
        with torch.no_grad():
            for p in method.raw_networks["G_IS"].parameters():
                p.add_(1.0)  # another epoch, other weights
        weights.append({k: v.clone() for k, v in method.raw_networks["G_IS"].state_dict().items()})
        history.append({"epoch": epoch, "val_miou": val})
        checkpoint.save(folder, cfg, data.info, method, {}, epoch, history)
        assert torch.load(folder / checkpoint.REPORTED, weights_only=True)["epoch"] == 1
    assert checkpoint.load_state(folder)["epoch"] == 3
    _, reported, epoch = load_trial(folder)
    assert epoch == 1
    for k, v in reported.raw_networks["G_IS"].state_dict().items():
        assert torch.equal(v, weights[0][k]) and not torch.equal(v, weights[2][k]), k
    # a later, better epoch replaces it; select=final reports (and keeps) the latest
    history.append({"epoch": 4, "val_miou": 0.5})
    checkpoint.save(folder, cfg, data.info, method, {}, 4, history)
    assert load_trial(folder)[2] == 4
    final = resolve_config({**TINY, "epochs": 3, "select": "final"})
    checkpoint.save(tmp_path / "final", final, data.info, method, {}, 2, history[:2])
    assert load_trial(tmp_path / "final")[2] == 2
