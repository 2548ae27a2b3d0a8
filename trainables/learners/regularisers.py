"""The training objective of the network learners and its latent regularisers (docs/science.md §8).

One mini-batch's objective, for anchor weights wᵢ (1/B for a plain mean; 1/B_clean or β/B_poison
for the backdoor learning curve, docs/science.md §5), logits zᵢ and latent representations hᵢ (the
input of the network's last layer):

    Σᵢ wᵢ·(CE(zᵢ, yᵢ) + λ_ls·‖zᵢ‖₂) + λ_mm·R_mixup + λ_c·R_contrastive + λ_s·R_snnl

- logit squeezing: ‖logits‖₂ per sample (not squared), as docs/science.md writes it;
- manifold mixup: γ ~ U(0, 1) and a random pairing π of the batch; h̃ = γh + (1−γ)h_π and the
  soft label γ·e_y + (1−γ)·e_{y_π} go through the last layer; mixed at the latent layer only;
- contrastive (Hadsell et al.): per pair d² for the same class, max(0, c − d)² otherwise, d the
  Euclidean distance between latent representations, averaged over the pairs of each anchor;
- soft nearest neighbour loss (Frosst et al.): −log(Σ_{same class} e^{−d²/T} / Σ_{others} e^{−d²/T})
  per anchor; anchors without a same-class partner in the batch contribute 0.

The batch-coupled terms weight partners by the same wᵢ (and mixup pairs by wᵢ·w_π(i)), so a
sample of weight 0 — a poison at β = 0 — takes no part at all and the objective is continuous in β.
They are sums over anchors scaled like the loss, so at equal weights they are batch means.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Regularisers:
    """Weights (0 = off) and shape parameters of the latent regularisers."""

    logit_squeeze: float = 0.0
    manifold_mixup: float = 0.0
    contrastive: float = 0.0
    contrastive_margin: float = 1.0
    snnl: float = 0.0
    snnl_temperature: float = 1.0

    @property
    def coupled(self) -> list[str]:
        """The active terms that couple the samples of a batch (not per-sample losses)."""
        names = ("manifold_mixup", "contrastive", "snnl")
        return [n for n in names if getattr(self, n) != 0]


def logit_squeeze_term(logits: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σᵢ wᵢ‖zᵢ‖₂."""
    return (w * logits.norm(dim=1)).sum()


def _pair_distances_sq(h: torch.Tensor) -> torch.Tensor:
    diff = h[:, None, :] - h[None, :, :]
    return (diff * diff).sum(-1)


def contrastive_term(
    h: torch.Tensor, y: torch.Tensor, w: torch.Tensor, margin: float
) -> torch.Tensor:
    """Σᵢ wᵢ · (Σ_{j≠i} wⱼ·pairᵢⱼ / Σ_{j≠i} wⱼ), pair = d² (same class) or max(0, c − d)²."""
    n = len(y)
    if n < 2:
        return h.sum() * 0.0
    d2 = _pair_distances_sq(h)
    d = torch.sqrt(d2.clamp_min(1e-12))
    same = y[:, None] == y[None, :]
    pair = torch.where(same, d2, F.relu(margin - d) ** 2)
    off = ~torch.eye(n, dtype=torch.bool, device=h.device)
    wj = w[None, :].expand(n, n) * off
    norm = wj.sum(1)
    per_anchor = torch.where(
        norm > 0, (wj * pair).sum(1) / norm.clamp_min(1e-30), torch.zeros_like(norm)
    )
    return (w * per_anchor).sum()


def snnl_term(
    h: torch.Tensor, y: torch.Tensor, w: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Σᵢ wᵢ · −log(Σ_{j≠i, yⱼ=yᵢ} wⱼe^{−dᵢⱼ²/T} / Σ_{k≠i} w_k e^{−dᵢₖ²/T})."""
    n = len(y)
    if n < 2:
        return h.sum() * 0.0
    # finite stand-in for log 0 keeps NaN out of the gradients of masked entries
    floor = -1e30
    present = (w > 0)[None, :]
    logits = -_pair_distances_sq(h) / temperature + torch.log(w.clamp_min(1e-38))[None, :]
    off = ~torch.eye(n, dtype=torch.bool, device=h.device) & present
    same = (y[:, None] == y[None, :]) & off
    lse_all = torch.logsumexp(torch.where(off, logits, torch.full_like(logits, floor)), dim=1)
    lse_same = torch.logsumexp(torch.where(same, logits, torch.full_like(logits, floor)), dim=1)
    valid = same.any(1)
    per_anchor = torch.where(valid, lse_all - lse_same, torch.zeros_like(lse_all))
    return (torch.where(valid, w, torch.zeros_like(w)) * per_anchor).sum()


def manifold_mixup_term(
    h: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    head,
    gamma: float | torch.Tensor,
    perm: torch.Tensor,
) -> torch.Tensor:
    """(Σw) · Σᵢ vᵢ·CE(head(γhᵢ + (1−γ)h_πᵢ), γe_yᵢ + (1−γ)e_yπᵢ) / Σᵢ vᵢ, vᵢ = wᵢ·w_πᵢ."""
    mixed = head(gamma * h + (1.0 - gamma) * h[perm])
    logp = F.log_softmax(mixed, dim=1)
    own, partner = logp.gather(1, y[:, None])[:, 0], logp.gather(1, y[perm][:, None])[:, 0]
    nll = -(gamma * own + (1.0 - gamma) * partner)
    v = w * w[perm]
    total = v.sum()  # 0 when every pair has a weightless partner; no read-back to the host
    return torch.where(total > 0, w.sum() * (v * nll).sum() / total.clamp_min(1e-30), 0.0 * total)


def batch_objective(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    reg: Regularisers,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The objective of one mini-batch (see the module docstring). ``model`` is a LatentModel."""
    h = model.features(x)
    logits = model.head(h)
    per_sample = F.cross_entropy(logits, y, reduction="none")
    total = (w * per_sample).sum()
    if reg.logit_squeeze:
        total = total + reg.logit_squeeze * logit_squeeze_term(logits, w)
    if reg.manifold_mixup:  # drawn on the generator's device: nothing read back to the host
        where = generator.device if generator is not None else y.device
        gamma = torch.rand((), generator=generator, device=where).to(h.device)
        perm = torch.randperm(len(y), generator=generator, device=where).to(y.device)
        total = total + reg.manifold_mixup * manifold_mixup_term(h, y, w, model.head, gamma, perm)
    if reg.contrastive:
        total = total + reg.contrastive * contrastive_term(h, y, w, reg.contrastive_margin)
    if reg.snnl:
        total = total + reg.snnl * snnl_term(h, y, w, reg.snnl_temperature)
    return total
