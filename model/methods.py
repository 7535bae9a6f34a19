"""Training methods: the losses and ``optimize_parameters`` of each method, apart from the networks.

pytorch-CycleGAN-and-pix2pix style: a method owns its networks (built with ``create_network`` +
``init_weights`` under the caller's seed, in a fixed order) and optimizers, and one call of
``optimize_parameters`` is one training iteration. Registered in ``METHODS``:

- ``cyclegan``: Mondal et al. 2019 (the paper), Eq. 1–9.
- ``partial``: G_IS with L^S_gen on the labeled subset only (the supervised lower bound).
- ``full``: the same on every training image (``all_labeled``; the upper bound).
- ``hung``: Hung et al. 2018 adversarial baseline with the same G_IS.

Code name → paper symbol (Mondal et al. 2019, §3.2):

    x, y          x ∈ X_L, y ∈ Y_L          labeled image, its mask (255 = ignore)
    x_u           x' ∈ X_U                  unlabeled image
    y_onehot      y as a C-channel map       how masks enter G_SI and D_S
    G_IS, G_SI    G_IS, G_SI                image→segmentation (logits), segmentation→image (tanh)
    D_S, D_I      D_S, D_I                  pixel-wise discriminators of masks / images
    x_fake        G_SI(y)                   generated image (Eq. 3, fake for D_I in Eq. 5)
    s_u           softmax(G_IS(x'))         generated mask (fake for D_S in Eq. 4)
    S_gen         L^S_gen   (Eq. 1)         H(y, G_IS(x))                       weight 1
    I_gen         L^I_gen   (Eq. 3)         ‖G_SI(y) − x‖²                      lambda_1
    S_cycle       L^S_cycle (Eq. 7)         H(y, G_IS(G_SI(y)))                 lambda_2
    I_cycle       L^I_cycle (Eq. 6)         ‖G_SI(G_IS(x')) − x'‖₁              lambda_3
    S_adv_G       generator side of Eq. 4   (D_S(G_IS(x')) − 1)²                lambda_4
    I_adv_G       generator side of Eq. 5   (D_I(G_SI(y)) − 1)²                 lambda_5
    S_adv_D       Eq. 4 for D_S             ½[(D_S(y) − 1)² + D_S(G_IS(x'))²]   (y's 255 pixels left out)
    I_adv_D       Eq. 5 for D_I             ½[(D_I(x') − 1)² + D_I(G_SI(y))²]

Eq. 9 (min over G, max over D) is done by alternating steps: one Adam step on G_IS and G_SI
together with D_S, D_I frozen, then one Adam step on D_S and D_I with the generated images and
masks detached. The generators' adversarial terms use the least-squares form "call it real"
(LSGAN), as in CycleGAN, instead of literally maximising −λ·L_disc.

The loss dicts hold the *unweighted* terms (the paper's L's) plus the weighted totals ``G_total``
(Eq. 8 without the D-only parts) and ``D_total``. A term whose λ is 0 is neither computed nor
reported, and a forward pass that only such terms need is skipped.

The GAN levers of ``TrialConfig`` (``GAN_FIELDS``; their defaults are the paper as written) act here:
``d_s_input`` is what D_S sees of a prediction (``CycleGAN.d_s_view``), ``instance_noise`` is added to
every discriminator input (``CycleGAN.judge``), ``real_label_smoothing`` lowers D's real target,
``pool_size``/``pool_prob`` feed D from a ``HistoryPool``, ``discriminator``/``d_norm``/``d_depth``/
``d_lr_ratio`` build D and its Adam, and ``set_epoch`` applies the warm-up and ramp-up of λ2…λ5
(``rampup_factor``; the effective weights go into each epoch's record).
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Adam, Optimizer

from . import losses
from .config import RAMPED_LAMBDAS, SIDE_MULTIPLE
from .errors import UserError
from .masks import IGNORE, one_hot, predicted_classes
from .metrics import ConfusionMatrix
from .networks import create_network, init_weights, patch_min_side
from .registry import Registry

if TYPE_CHECKING:
    from .config import TrialConfig
    from .data import DatasetInfo

Wrapper = Callable[[nn.Module], nn.Module]


def adam_options(device: torch.device) -> dict[str, bool]:
    """Adam's implementation: fused on CUDA, foreach on CPU (the same math as the plain loop, fewer kernels)."""
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


@dataclass
class Batch:
    """One training batch. Images float, normalized to [-1, 1]; masks int64 with 255 = ignore."""

    x: Tensor  # labeled images (B, C_in, H, W)
    y: Tensor  # their masks (B, H, W)
    x_u: Tensor | None = None  # unlabeled images (B_u, C_in, H, W); None if uses_unlabeled is False


class Method:
    """Base class: networks, optimizers, device/precision handling, the two-phase training step.

    ``raw_networks`` are the plain modules: parameters, optimizers and ``state_dict`` use them, so
    checkpoints carry no wrapper prefixes. ``networks`` are what the training forward passes call:
    the same modules, possibly wrapped for data parallelism (``distribute``) and ``torch.compile``d.
    A frozen network (a discriminator during the generator phase) and ``predict`` run unwrapped:
    they need no gradient synchronisation.
    """

    uses_unlabeled: ClassVar[bool] = False
    all_labeled: ClassVar[bool] = False
    LOSS_TERMS: ClassVar[tuple[str, ...]]  # every key optimize_parameters may return (a λ of 0 drops some)

    @classmethod
    def check(cls, cfg: TrialConfig, info: DatasetInfo) -> None:
        """Refuse a config this method cannot train (``UserError`` naming the fix); called while resolving."""
        if info.height % SIDE_MULTIPLE or info.width % SIDE_MULTIPLE:
            raise UserError(
                f"image size {info.height}x{info.width} of dataset '{info.name}' is not divisible by {SIDE_MULTIPLE}, "
                f"which the generators need; set image_height/image_width to multiples of {SIDE_MULTIPLE}"
            )

    def __init__(self, cfg: TrialConfig, info: DatasetInfo, device: torch.device, total_iters: int) -> None:
        self.check(cfg, info)
        self.cfg = cfg
        self.info = info
        self.device = torch.device(device)
        self.total_iters = total_iters
        self.iteration = 0  # optimize_parameters calls so far
        self.unlabeled_steps = 0  # of them, those that fed the unlabeled batch to a network (draws_unlabeled)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        # merged passes (``_fwd_each``): auto = on CUDA, where a pass's fixed cost is kernel launches
        self.merge_passes = self.device.type == "cuda" if cfg.merge_passes is None else cfg.merge_passes
        self.use_amp = bool(cfg.amp) and self.device.type == "cuda"  # never autocast on CPU
        self.raw_networks: dict[str, nn.Module] = {}
        self.networks: dict[str, nn.Module] = {}
        self.frozen_networks: dict[str, nn.Module] = {}  # unwrapped (maybe compiled): frozen passes, predict
        self.optimizers: dict[str, Optimizer] = {}
        self.pools: dict[str, HistoryPool] = {}  # per discriminator, when it keeps a history (saved with the state)
        self.per_sample: dict[str, bool] = {}  # network -> no batch statistics: batches can share a pass
        self._frozen: set[str] = set()

    # --- building ---------------------------------------------------------------------------
    def _add_network(self, name: str, kind: str, **kwargs: Any) -> None:
        # init on CPU, then move: the same seed gives the same weights on every device (shapes only on "meta")
        with torch.device("meta") if self.device.type == "meta" else contextlib.nullcontext():
            net = init_weights(create_network(kind, **kwargs)).to(self.device, memory_format=self.memory_format)
        self.raw_networks[name] = net
        self.per_sample[name] = is_per_sample(net)
        self.frozen_networks[name] = self.networks[name] = self._compiled(net)

    def _compiled(self, net: nn.Module) -> nn.Module:
        return torch.compile(net) if self.cfg.compile else net

    def distribute(self, wrap: Wrapper) -> None:
        """Wrap every network's training forward with ``wrap`` (e.g. DistributedDataParallel)."""
        self.networks = {n: self._compiled(wrap(m)) for n, m in self.raw_networks.items()}

    def _generator(self, in_channels: int, out_channels: int, out: str) -> dict[str, Any]:
        return dict(in_channels=in_channels, out_channels=out_channels, ngf=self.cfg.ngf,
                    n_blocks=self.cfg.n_blocks, out=out)

    def _adam(self, names: Iterable[str], lr: float, betas: tuple[float, float]) -> Adam:
        """One Adam over the named networks."""
        params = [p for n in names for p in self.raw_networks[n].parameters()]
        return Adam(params, lr=lr, betas=betas, **adam_options(self.device))

    # --- running ----------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.use_amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _fmt(self, t: Tensor) -> Tensor:
        return t.contiguous(memory_format=self.memory_format)

    def _image(self, t: Tensor) -> Tensor:
        return self._fmt(t.to(self.device, non_blocking=True))

    def _mask(self, y: Tensor) -> Tensor:
        return y.to(self.device, dtype=torch.long, non_blocking=True)

    def _fwd(self, name: str, x: Tensor) -> Tensor:
        """One forward pass of network ``name`` (bf16 autocast if enabled); the output in fp32."""
        net = self.frozen_networks[name] if name in self._frozen else self.networks[name]
        with self._autocast():
            out = net(x)
        return out.float()

    def _fwd_each(self, name: str, *xs: Tensor) -> list[Tensor]:
        """Network ``name`` on each of ``xs``: with ``merge_passes``, one pass over their concatenation where that
        is the same arithmetic (``per_sample``) and the same backward (all inputs need a gradient or none does:
        else the merged pass would compute input gradients nobody asked for), else one pass each. A merged pass
        pays each layer's fixed cost once."""
        if len(xs) <= 1 or not self.merge_passes or not self.per_sample[name] or len({x.requires_grad for x in xs}) > 1:
            return [self._fwd(name, x) for x in xs]
        return list(self._fwd(name, torch.cat(xs)).split([len(x) for x in xs]))

    def _set_requires_grad(self, names: Iterable[str], flag: bool) -> None:
        for n in names:
            for p in self.raw_networks[n].parameters():
                p.requires_grad_(flag)
            (self._frozen.discard if flag else self._frozen.add)(n)

    def _step(self, opt: str, loss: Tensor) -> None:
        self.optimizers[opt].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[opt].step()

    def predict(self, x: Tensor) -> Tensor:
        """G_IS logits (B, C, H, W) in fp32. The caller picks eval mode and ``torch.no_grad``."""
        with self._autocast():
            out = self.frozen_networks["G_IS"](self._image(x))
        return out.float()

    def eval_mode(self) -> contextlib.AbstractContextManager:
        """Every network in eval mode for the block, then back to the mode each had."""
        return _eval_mode(list(self.raw_networks.values()))

    @torch.no_grad()
    def confusion_matrix(self, images: np.ndarray, masks: np.ndarray, batch_size: int) -> ConfusionMatrix:
        """G_IS's argmax on uint8 ``images`` against ``masks`` as one confusion matrix, every network in eval mode."""
        from .data.base import normalize_images

        cm = ConfusionMatrix(self.info.num_classes, device=self.device)
        with self.eval_mode():
            for s in range(0, len(images), batch_size):
                x = normalize_images(torch.as_tensor(images[s : s + batch_size]).to(self.device))
                cm.update(self.predict(x), torch.as_tensor(masks[s : s + batch_size]).to(self.device).long())
        return cm

    # --- training ---------------------------------------------------------------------------
    def generator_losses(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Generator-phase forward: (loss terms with graph incl. ``G_total``, tensors the D phase reuses).

        Discriminators are frozen here (``requires_grad`` False) until ``optimize_D``.
        """
        raise NotImplementedError

    def optimize_G(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Generator phase: one Adam step of optimizer "G" on ``G_total``."""
        terms, saved = self.generator_losses(batch)
        self._step("G", terms["G_total"])
        return {k: v.detach() for k, v in terms.items()}, saved

    def optimize_D(self, saved: dict[str, Tensor]) -> dict[str, Tensor]:
        """Discriminator phase from the generator phase's detached outputs; none by default."""
        return {}

    def draws_unlabeled(self) -> bool:
        """Whether this iteration feeds the unlabeled batch to a network (what ``unlabeled_steps`` counts)."""
        return self.uses_unlabeled

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch (1-based): per-epoch schedules start here. None by default."""

    def effective_weights(self) -> dict[str, float]:
        """The λ's acting in the current epoch, for the epoch record (``RAMPED_LAMBDAS``); none by default."""
        return {}

    def optimize_parameters(self, batch: Batch) -> dict[str, Tensor]:
        """One training iteration. Returns a detached 0-dim tensor per loss term (no host sync)."""
        self.unlabeled_steps += self.draws_unlabeled()
        g_terms, saved = self.optimize_G(batch)
        d_terms = self.optimize_D(saved)
        self.iteration += 1
        return {**g_terms, **d_terms}

    # --- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "networks": {n: m.state_dict() for n, m in self.raw_networks.items()},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "iteration": self.iteration,
            "unlabeled_steps": self.unlabeled_steps,
            "pools": {n: list(p.items) for n, p in self.pools.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for n, m in self.raw_networks.items():
            m.load_state_dict(state["networks"][n])
        for n, o in self.optimizers.items():
            # keep this machine's Adam implementation (a CUDA checkpoint says fused=True)
            impl = [{k: g[k] for k in ("foreach", "fused")} for g in o.param_groups]
            o.load_state_dict(state["optimizers"][n])
            for g, kw in zip(o.param_groups, impl, strict=True):
                g.update(kw)
        self.iteration = int(state["iteration"])
        self.unlabeled_steps = int(state.get("unlabeled_steps", self.iteration if self.uses_unlabeled else 0))
        for n, items in state.get("pools", {}).items():
            self.pools[n].items = [t.to(self.device) for t in items]


METHODS: Registry[type[Method]] = Registry("method")


def is_per_sample(net: nn.Module) -> bool:
    """Whether ``net`` treats each sample alone (no batch norm): then one pass over two batches is two passes."""
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


class HistoryPool:
    """A history of generated batches for a discriminator (Shrivastava et al. 2017; the authors' code keeps 50).

    Until ``size`` batches are stored each new batch is stored and returned; then, with probability ``prob``,
    a random stored batch is returned and the new one takes its place, else the new one is returned. Whole
    batches, as the authors' code calls its pool with ``[batch]``. Draws from torch's global RNG, which the
    checkpoint saves, so a resumed run draws the same. ``size`` 0 returns every batch unchanged.
    """

    def __init__(self, size: int, prob: float) -> None:
        self.size, self.prob = size, prob
        self.items: list[Tensor] = []

    def query(self, batch: Tensor) -> Tensor:
        if self.size == 0:
            return batch
        if len(self.items) < self.size:
            self.items.append(batch)
            return batch
        if torch.rand(()).item() < self.prob:
            i = int(torch.randint(self.size, ()).item())
            old, self.items[i] = self.items[i], batch
            return old
        return batch


def check_hung_discriminator_fits(info: DatasetInfo, who: str) -> None:
    """Hung et al.'s discriminator has five stride-2 convolutions: it needs images of at least 32×32."""
    if info.height < 32 or info.width < 32:
        raise UserError(f"{who} needs images at least 32x32 (its discriminator has five stride-2 convs), dataset "
                        f"'{info.name}' is {info.height}x{info.width}; set image_height/image_width >= 32")


def rampup_factor(epoch: int, warmup: int, rampup: int) -> float:
    """The share of λ2…λ5 acting in ``epoch`` (1-based): 0 during the ``warmup`` epochs, then Laine & Aila's
    (2017) sigmoid ramp exp(−5(1 − t)²) with t = (epoch − warmup − 1) / rampup over ``rampup`` epochs, then 1."""
    if epoch <= warmup:
        return 0.0
    if rampup == 0:
        return 1.0
    t = min(1.0, (epoch - warmup - 1) / rampup)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def create_method(cfg: TrialConfig, info: DatasetInfo, device: torch.device, total_iters: int) -> Method:
    """The method ``cfg.method`` with its networks initialised from ``cfg.seed`` (same seed, same weights)."""
    seed_everything(cfg.seed)
    return METHODS.get(cfg.method)(cfg, info, device, total_iters)


@METHODS.register("partial")
class Partial(Method):
    """Supervised G_IS on the labeled subset: L^S_gen (Eq. 1) only."""

    LOSS_TERMS = ("S_gen", "G_total")

    def __init__(self, cfg: TrialConfig, info: DatasetInfo, device: torch.device, total_iters: int) -> None:
        super().__init__(cfg, info, device, total_iters)
        self._add_network("G_IS", "resnet_generator", **self._generator(info.in_channels, info.num_classes, "logits"))
        self.optimizers["G"] = self._adam(["G_IS"], cfg.lr, (cfg.beta1, cfg.beta2))

    def generator_losses(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        s_gen = losses.cross_entropy(self._fwd("G_IS", self._image(batch.x)), self._mask(batch.y))
        return {"S_gen": s_gen, "G_total": s_gen}, {}


@METHODS.register("full")
class Full(Partial):
    """``partial`` trained on every training image (the fully supervised upper bound)."""

    all_labeled = True


@METHODS.register("cyclegan")
class CycleGAN(Method):
    """Mondal et al. 2019: G_IS, G_SI, D_S, D_I trained with Eq. 1–8, alternating as in Eq. 9."""

    uses_unlabeled = True
    DISCRIMINATORS = ("D_S", "D_I")
    LOSS_TERMS = ("S_gen", "I_gen", "S_cycle", "I_cycle", "S_adv_G", "I_adv_G", "G_total",
                  "S_adv_D", "I_adv_D", "D_total")
    # generator term -> the λ weighting it (Eq. 8); S_gen has weight 1
    TERM_LAMBDAS: ClassVar[dict[str, str]] = {
        "I_gen": "lambda_1", "S_cycle": "lambda_2", "I_cycle": "lambda_3", "S_adv_G": "lambda_4", "I_adv_G": "lambda_5"}

    @classmethod
    def check(cls, cfg: TrialConfig, info: DatasetInfo) -> None:
        super().check(cfg, info)
        side = min(info.height, info.width)
        if cfg.discriminator == "hung":
            check_hung_discriminator_fits(info, "discriminator 'hung'")
        if cfg.discriminator == "patch" and side < patch_min_side(cfg.d_depth):
            fits = max((d for d in range(1, 9) if patch_min_side(d) <= side), default=None)
            fix = f"set d_depth <= {fits}" if fits else "use discriminator=pixel"
            raise UserError(f"discriminator 'patch' with d_depth={cfg.d_depth} needs images at least "
                            f"{patch_min_side(cfg.d_depth)} px a side, dataset '{info.name}' is "
                            f"{info.height}x{info.width}; {fix} or larger images")

    def __init__(self, cfg: TrialConfig, info: DatasetInfo, device: torch.device, total_iters: int) -> None:
        super().__init__(cfg, info, device, total_iters)
        c, c_in = info.num_classes, info.in_channels
        # fixed order, all four always built: G_IS gets the same init under a seed whatever the λ's
        self._add_network("G_IS", "resnet_generator", **self._generator(c_in, c, "logits"))
        self._add_network("G_SI", "resnet_generator", **self._generator(c, c_in, "tanh"))
        d_kind, d_kwargs = f"{cfg.discriminator}_discriminator", {"ndf": cfg.ndf}
        if cfg.discriminator != "hung":  # Hung's D has no norm and a fixed depth
            d_kwargs["norm"] = cfg.d_norm
        if cfg.discriminator == "patch":
            d_kwargs["depth"] = cfg.d_depth
        self._add_network("D_S", d_kind, in_channels=c, **d_kwargs)
        self._add_network("D_I", d_kind, in_channels=c_in, **d_kwargs)
        betas = (cfg.beta1, cfg.beta2)
        self.optimizers["G"] = self._adam(["G_IS", "G_SI"], cfg.lr, betas)
        self.optimizers["D"] = self._adam(self.DISCRIMINATORS, cfg.lr * cfg.d_lr_ratio, betas)
        self.pools = {n: HistoryPool(cfg.pool_size, cfg.pool_prob) for n in self.DISCRIMINATORS}
        # λ weight of each generator term acting now (Eq. 8; set_epoch applies the warm-up and ramp-up)
        self.weights = {term: getattr(cfg, lam) for term, lam in self.TERM_LAMBDAS.items()}

    def set_epoch(self, epoch: int) -> None:
        cfg = self.cfg
        r = rampup_factor(epoch, cfg.unsup_warmup_epochs, cfg.unsup_rampup_epochs)
        self.weights = {term: getattr(cfg, lam) * (r if lam in RAMPED_LAMBDAS else 1.0)
                        for term, lam in self.TERM_LAMBDAS.items()}

    def effective_weights(self) -> dict[str, float]:
        return {lam: self.weights[term] for term, lam in self.TERM_LAMBDAS.items() if lam in RAMPED_LAMBDAS}

    def draws_unlabeled(self) -> bool:
        """The unlabeled batch feeds the cycle (λ3), the adversarial S term (λ4) and D_I's real side (λ5)."""
        w = self.weights
        return w["I_cycle"] > 0 or w["S_adv_G"] > 0 or w["I_adv_G"] > 0

    # --- what the discriminators see --------------------------------------------------------
    def d_s_view(self, logits_u: Tensor, s_u: Tensor) -> Tensor:
        """D_S's input for a prediction (config ``d_s_input``): the softmax ``s_u`` (paper Eq. 4); a detached
        one-hot argmax (the authors' code: λ4 sends G_IS no gradient); its straight-through version (exactly
        one-hot forward, the softmax's gradient backward); or a Gumbel-softmax sample at ``gumbel_tau``."""
        mode = self.cfg.d_s_input
        if mode == "softmax":
            return s_u
        if mode == "gumbel":
            return self._fmt(F.gumbel_softmax(logits_u, tau=self.cfg.gumbel_tau, hard=False, dim=1))
        hard = self._fmt(one_hot(predicted_classes(logits_u.detach()), self.info.num_classes, s_u.dtype))
        if mode == "detached_argmax":
            return hard
        return hard + (s_u - s_u.detach())  # straight_through: the forward value is exactly ``hard``

    def real_mask_view(self, y_onehot: Tensor, y: Tensor, logits: Tensor) -> Tensor:
        """D_S's real input. An ignored (255) pixel of the one-hot mask is an all-zero vector that no prediction
        can produce: the pixel D scores it alone and the loss leaves its score out, but a patch or hung D would
        see it beside valid pixels and tell real from generated by it (every digit has such a rim, every VOC
        object a boundary). For those, ignored pixels take D_S's view of G_IS's detached prediction there."""
        if self.cfg.discriminator == "pixel":
            return y_onehot
        logits = logits.detach()
        fill = self.d_s_view(logits, torch.softmax(logits, dim=1)).detach()
        return torch.where((y == IGNORE).unsqueeze(1), fill, y_onehot)

    def noise_sigma(self) -> float:
        """Instance noise σ now: ``instance_noise``, annealed linearly to 0 over the run if asked."""
        sigma = self.cfg.instance_noise
        if self.cfg.instance_noise_anneal:
            sigma *= max(0.0, 1.0 - self.iteration / max(1, self.total_iters))
        return sigma

    def judge(self, name: str, *xs: Tensor) -> Tensor | list[Tensor]:
        """Discriminator ``name``'s scores of each of ``xs`` (one pass where it has no batch statistics),
        with instance noise on each input when σ > 0; one input, one score map."""
        sigma = self.noise_sigma()
        if sigma > 0:
            xs = tuple(x + sigma * torch.randn_like(x) for x in xs)
        scores = self._fwd_each(name, *xs)
        return scores[0] if len(xs) == 1 else scores

    # --- the two phases ---------------------------------------------------------------------
    def generator_losses(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        w = self.weights
        lam1, lam2, lam3, lam4, lam5 = (w[t] for t in self.TERM_LAMBDAS)
        self._set_requires_grad(self.DISCRIMINATORS, False)
        x = self._image(batch.x)
        y = self._mask(batch.y)
        x_u = None
        if self.draws_unlabeled():
            if batch.x_u is None:
                raise ValueError("cyclegan needs batch.x_u (unlabeled images) when lambda_3/4/5 > 0")
            x_u = self._image(batch.x_u)
        terms: dict[str, Tensor] = {}
        saved: dict[str, Tensor] = {}

        # G_IS on x and x' in one pass where merge_passes allows it (G_SI's y and s_u differ in needing an input
        # gradient, so they keep their own passes)
        cycle_u = lam3 > 0 or lam4 > 0
        logits, *rest = self._fwd_each("G_IS", x, *([x_u] if cycle_u else []))
        logits_u = rest[0] if cycle_u else None
        terms["S_gen"] = losses.cross_entropy(logits, y)  # Eq. 1
        y_onehot = self._fmt(one_hot(y, self.info.num_classes)) if lam1 or lam2 or lam4 or lam5 else None
        if lam1 > 0 or lam2 > 0 or lam5 > 0:
            x_fake = self._fwd("G_SI", y_onehot)  # G_SI(y)
            if lam1 > 0:
                terms["I_gen"] = losses.l2(x_fake, x)  # Eq. 3
            if lam2 > 0:
                terms["S_cycle"] = losses.cross_entropy(self._fwd("G_IS", x_fake), y)  # Eq. 7
            if lam5 > 0:
                terms["I_adv_G"] = losses.lsgan_real(self.judge("D_I", x_fake))  # Eq. 5, G side
                saved["x_fake"], saved["x_u"] = x_fake.detach(), x_u
        if cycle_u:
            # softmax probabilities into G_SI, not a detached argmax: the cycle's gradient reaches G_IS
            s_u = torch.softmax(logits_u, dim=1)
            if lam3 > 0:
                terms["I_cycle"] = losses.l1(self._fwd("G_SI", s_u), x_u)  # Eq. 6
            if lam4 > 0:
                seen = self.d_s_view(logits_u, s_u)
                terms["S_adv_G"] = losses.lsgan_real(self.judge("D_S", seen))  # Eq. 4, G side
                saved["s_u"], saved["y_valid"] = seen.detach(), y != IGNORE
                saved["y_onehot"] = self.real_mask_view(y_onehot, y, logits)

        total = terms["S_gen"]
        for name, weight in w.items():
            if name in terms:
                total = total + weight * terms[name]
        terms = {name: terms[name] for name in ("S_gen", *w) if name in terms}  # stable order
        terms["G_total"] = total
        return terms, saved

    def optimize_D(self, saved: dict[str, Tensor]) -> dict[str, Tensor]:
        """LSGAN discriminator step (Eq. 4, 5), each real+fake pair halved; skipped where λ is 0. The generated
        side may come from the history pool; the real target is 1 − ``real_label_smoothing``."""
        if not saved:
            return {}
        self._set_requires_grad(self.DISCRIMINATORS, True)
        real = 1.0 - self.cfg.real_label_smoothing
        terms: dict[str, Tensor] = {}
        if "s_u" in saved:
            d_real, d_fake = self.judge("D_S", saved["y_onehot"], self.pools["D_S"].query(saved["s_u"]))
            terms["S_adv_D"] = 0.5 * (losses.lsgan_real(d_real, saved["y_valid"], real) + losses.lsgan_fake(d_fake))
        if "x_fake" in saved:
            d_real, d_fake = self.judge("D_I", saved["x_u"], self.pools["D_I"].query(saved["x_fake"]))
            terms["I_adv_D"] = 0.5 * (losses.lsgan_real(d_real, target=real) + losses.lsgan_fake(d_fake))
        total = sum(terms.values())
        self._step("D", total)
        terms["D_total"] = total
        return {k: v.detach() for k, v in terms.items()}


def hung_pseudo_labels(logits_u: Tensor, d_u: Tensor, t_semi: float) -> Tensor:
    """Hung et al. self-training target: argmax of the prediction, 255 where sigmoid(D) < T_semi."""
    labels = predicted_classes(logits_u.detach())
    return labels.masked_fill(torch.sigmoid(d_u.detach()).squeeze(1) < t_semi, IGNORE)


@METHODS.register("hung")
class Hung(Method):
    """Hung et al. 2018 baseline (shared notes): G_IS + fully convolutional confidence D (BCE).

    G: L_ce + λ_adv·BCE(D(p_l), 1) + λ_semi_adv·BCE(D(p_u), 1) + λ_semi·L_ce(pred_u, ŷ) where p is
    the softmax and ŷ the confident argmax; the self-training term starts once
    ``iteration >= hung_semi_start * total_iters``. D: ½·BCE(D(p.detach()), 0) over labeled (ignored
    pixels masked) and unlabeled predictions + ½·BCE(D(one-hot y), 1) (ignored pixels masked). The
    real one-hot masks are this batch's ``y`` (Hung draws them from a separately shuffled loader).
    """

    uses_unlabeled = True
    LOSS_TERMS = ("S_gen", "adv_G", "semi_adv_G", "semi_G", "G_total", "D_total")

    @classmethod
    def check(cls, cfg: TrialConfig, info: DatasetInfo) -> None:
        super().check(cfg, info)
        check_hung_discriminator_fits(info, "method 'hung'")

    def __init__(self, cfg: TrialConfig, info: DatasetInfo, device: torch.device, total_iters: int) -> None:
        super().__init__(cfg, info, device, total_iters)
        self._add_network("G_IS", "resnet_generator", **self._generator(info.in_channels, info.num_classes, "logits"))
        self._add_network("D", "hung_discriminator", in_channels=info.num_classes, ndf=cfg.ndf)
        self.optimizers["G"] = self._adam(["G_IS"], cfg.lr, (cfg.beta1, cfg.beta2))
        self.optimizers["D"] = self._adam(["D"], cfg.hung_d_lr, (cfg.hung_d_beta1, cfg.hung_d_beta2))

    def semi_active(self) -> bool:
        """Whether the self-training term is on in the current iteration."""
        return self.cfg.hung_lambda_semi > 0 and self.iteration >= self.cfg.hung_semi_start * self.total_iters

    def draws_unlabeled(self) -> bool:
        """The unlabeled batch feeds the semi-adversarial term, or the self-training term once it is on."""
        return self.cfg.hung_lambda_semi_adv > 0 or self.semi_active()

    def generator_losses(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        cfg = self.cfg
        self._set_requires_grad(["D"], False)
        y = self._mask(batch.y)
        valid = y != IGNORE
        terms: dict[str, Tensor] = {}
        total_parts: list[Tensor] = []

        semi = self.semi_active()
        unlabeled = self.draws_unlabeled()
        if unlabeled and batch.x_u is None:
            raise ValueError("hung needs batch.x_u (unlabeled images) when its unlabeled terms are on")
        # G_IS on the labeled and unlabeled batch in one pass (it has no batch statistics)
        logits_l, *rest = self._fwd_each("G_IS", self._image(batch.x), *([self._image(batch.x_u)] if unlabeled else []))
        logits_u = rest[0] if unlabeled else None
        terms["S_gen"] = losses.cross_entropy(logits_l, y)
        total_parts.append(terms["S_gen"])
        p_l = torch.softmax(logits_l, dim=1)
        p_u = torch.softmax(logits_u, dim=1) if unlabeled else None
        # D's scores of p_l and p_u with their gradient: one pass over both when both terms need one
        semi_adv = unlabeled and cfg.hung_lambda_semi_adv > 0
        judged = ([p_l] if cfg.hung_lambda_adv > 0 else []) + ([p_u] if semi_adv else [])
        scores = self._fwd_each("D", *judged)
        if cfg.hung_lambda_adv > 0:
            terms["adv_G"] = losses.bce_logits(scores[0], 1.0, valid)
            total_parts.append(cfg.hung_lambda_adv * terms["adv_G"])
        saved = {"p_l": p_l.detach(), "valid": valid, "y": y}

        if unlabeled:
            if semi_adv:
                d_u = scores[-1]
                terms["semi_adv_G"] = losses.bce_logits(d_u, 1.0)
                total_parts.append(cfg.hung_lambda_semi_adv * terms["semi_adv_G"])
            else:
                with torch.no_grad():  # only the confidence map is needed
                    d_u = self._fwd("D", p_u)
            if semi:
                terms["semi_G"] = losses.cross_entropy(logits_u, hung_pseudo_labels(logits_u, d_u, cfg.hung_t_semi))
                total_parts.append(cfg.hung_lambda_semi * terms["semi_G"])
            saved["p_u"] = p_u.detach()

        terms["G_total"] = sum(total_parts[1:], total_parts[0])
        return terms, saved

    def optimize_D(self, saved: dict[str, Tensor]) -> dict[str, Tensor]:
        self._set_requires_grad(["D"], True)
        fake, mask = saved["p_l"], saved["valid"]
        if "p_u" in saved:  # one D pass over labeled and unlabeled predictions, as Hung's code
            fake = torch.cat([fake, saved["p_u"]])
            unl = torch.ones(len(saved["p_u"]), *mask.shape[1:], dtype=torch.bool, device=mask.device)
            mask = torch.cat([mask, unl])
        y_onehot = self._fmt(one_hot(saved["y"], self.info.num_classes))
        scores_fake, scores_real = self._fwd_each("D", self._fmt(fake), y_onehot)  # one pass: D has no norm
        total = 0.5 * (losses.bce_logits(scores_fake, 0.0, mask) + losses.bce_logits(scores_real, 1.0, saved["valid"]))
        self._step("D", total)
        return {"D_total": total.detach()}


@contextlib.contextmanager
def _eval_mode(nets: list[nn.Module]) -> Iterator[None]:
    was = [n.training for n in nets]
    for n in nets:
        n.eval()
    try:
        yield
    finally:
        for n, t in zip(nets, was, strict=True):
            n.train(t)


def loss_terms() -> tuple[str, ...]:
    """Every loss key any registered method logs, in first-seen order: what the epoch records hold."""
    seen: dict[str, None] = {}
    for name in METHODS:
        seen.update(dict.fromkeys(METHODS.get(name).LOSS_TERMS))
    return tuple(seen)
