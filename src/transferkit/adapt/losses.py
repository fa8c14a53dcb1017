"""Domain-adaptation losses as pure functions over source/target features and logits.

Every function takes keyword-only arguments named after what they are (``features_s``, ``features_t``,
``logits_s``, ``logits_t``, ``y_s``) and returns a scalar tensor to minimise; none keeps state. The
methods in ``transferkit.adapt.deep`` combine them with the shared training loop. Shapes: features
``(B, D)``, logits ``(B, C)``; source and target batches may differ in size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff  # type: ignore[attr-defined]
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None  # type: ignore[attr-defined]


def gradient_reversal(x: torch.Tensor, *, coeff: float = 1.0) -> torch.Tensor:
    """Identity on the way forward, gradient times ``-coeff`` on the way back (Ganin & Lempitsky, 2015).

    Placed between the features and a domain discriminator, one backward pass trains the discriminator
    to tell the domains apart and the feature extractor to make that impossible.
    """
    return _GradientReversal.apply(x, coeff)


def dann_coefficient(progress: float, *, gamma: float = 10.0) -> float:
    """DANN's schedule for the reversal strength, ``2 / (1 + exp(-gamma p)) - 1`` from 0 to ~1.

    It keeps the discriminator's noisy early gradients away from a feature extractor that has not yet
    learnt the source task.
    """
    return float(2.0 / (1.0 + torch.exp(torch.tensor(-gamma * progress))) - 1.0)


def domain_adversarial_loss(*, domain_logits_s: torch.Tensor, domain_logits_t: torch.Tensor,
                            weights_s: torch.Tensor | None = None,
                            weights_t: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of a domain discriminator: source is 1, target is 0.

    Args:
        domain_logits_s: ``(B_s,)`` or ``(B_s, 1)`` discriminator logits on source samples.
        domain_logits_t: ``(B_t,)`` or ``(B_t, 1)`` on target samples.
        weights_s: optional per-sample weights (CDAN+E's entropy weights); each domain's weights are
            normalised to mean 1 so that both domains count equally.
        weights_t: same for the target.
    """
    logits_s, logits_t = domain_logits_s.reshape(-1).float(), domain_logits_t.reshape(-1).float()
    loss_s = F.binary_cross_entropy_with_logits(logits_s, torch.ones_like(logits_s), reduction="none")
    loss_t = F.binary_cross_entropy_with_logits(logits_t, torch.zeros_like(logits_t), reduction="none")
    if weights_s is not None:
        loss_s = loss_s * weights_s / weights_s.mean()
    if weights_t is not None:
        loss_t = loss_t * weights_t / weights_t.mean()
    return 0.5 * (loss_s.mean() + loss_t.mean())


def multilinear_map(*, features: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """CDAN's conditioning (Long et al., NeurIPS 2018): the outer product of features and class
    probabilities, ``(B, D), (B, C) -> (B, C * D)``, so the discriminator aligns class-conditional
    distributions rather than only the marginal one."""
    return torch.bmm(probs.unsqueeze(2), features.unsqueeze(1)).flatten(1)  # (B, C, D) -> (B, C*D)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy of ``softmax(logits)``, ``(B, C) -> (B,)``, in nats."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    return -(log_probs.exp() * log_probs).sum(dim=1)


def entropy_weights(*, logits: torch.Tensor) -> torch.Tensor:
    """CDAN+E's sample weights ``1 + exp(-H(p))``: confident predictions count more (no gradient)."""
    return 1.0 + torch.exp(-entropy(logits.detach()))


def entropy_loss(*, logits_t: torch.Tensor) -> torch.Tensor:
    """Mean prediction entropy on the target (Grandvalet & Bengio, 2005): pushes decision boundaries
    away from dense target regions."""
    return entropy(logits_t).mean()


def information_maximization_loss(*, logits_t: torch.Tensor) -> torch.Tensor:
    """SHOT's information maximisation (Liang et al., ICML 2020): confident per-sample predictions
    (low entropy) that are diverse over the batch (high entropy of the mean prediction).

    Minimising plain entropy alone can put every sample in one class; the diversity term forbids it.
    """
    probs = F.softmax(logits_t.float(), dim=1)
    mean = probs.mean(dim=0)
    diversity = -(mean * torch.log(mean + 1e-8)).sum()
    return entropy(logits_t).mean() - diversity


def mcc_loss(*, logits_t: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """Minimum class confusion (Jin et al., ECCV 2020): the off-diagonal mass of the target batch's
    class-correlation matrix, with temperature-scaled probabilities and confident samples weighted up.

    0 when every sample is predicted with certainty and no sample is shared between two classes.
    """
    probs = F.softmax(logits_t.float() / temperature, dim=1)  # (B, C)
    weights = 1.0 + torch.exp(-entropy(logits_t.detach() / temperature))
    weights = (len(probs) * weights / weights.sum()).unsqueeze(1)  # (B, 1), mean 1
    confusion = (probs * weights).T @ probs  # (C, C)
    confusion = confusion / confusion.sum(dim=1, keepdim=True).clamp_min(1e-8)  # rows sum to 1
    classes = probs.shape[1]
    return (confusion.sum() - confusion.trace()) / classes


def coral_loss(*, features_s: torch.Tensor, features_t: torch.Tensor) -> torch.Tensor:
    """Deep CORAL (Sun & Saenko, ECCV 2016 workshops): ``||C_s - C_t||_F^2 / (4 D^2)`` between the
    feature covariances of the two batches."""
    features_s, features_t = features_s.float(), features_t.float()
    dim = features_s.shape[1]
    cov_s, cov_t = torch.cov(features_s.T), torch.cov(features_t.T)  # (D, D)
    return ((cov_s - cov_t) ** 2).sum() / (4 * dim * dim)


def mmd_loss(*, features_s: torch.Tensor, features_t: torch.Tensor, kernel_mul: float = 2.0,
             kernel_num: int = 5) -> torch.Tensor:
    """Multi-kernel maximum mean discrepancy (DAN, Long et al., ICML 2015), biased estimator, in [0, 2].

    The mean of ``kernel_num`` Gaussian kernels whose bandwidths are ``kernel_mul`` apart, centred on the
    mean squared distance in the joint batch (the bandwidth is not differentiated through). The squared
    MMD of two batches from one distribution is near 0 and grows as the distributions part.
    """
    features_s, features_t = features_s.float(), features_t.float()
    joint = torch.cat([features_s, features_t])  # (B_s + B_t, D)
    distances = torch.cdist(joint, joint).pow(2)  # (N, N)
    count = len(joint)
    bandwidth = distances.detach().sum() / max(count * count - count, 1)
    bandwidth = bandwidth / kernel_mul ** (kernel_num // 2)
    kernels = torch.stack([torch.exp(-distances / (bandwidth * kernel_mul**i).clamp_min(1e-12))
                           for i in range(kernel_num)]).mean(dim=0)  # (N, N), in [0, 1] whatever kernel_num
    size_s = len(features_s)
    k_ss, k_tt, k_st = kernels[:size_s, :size_s], kernels[size_s:, size_s:], kernels[:size_s, size_s:]
    return k_ss.mean() + k_tt.mean() - 2 * k_st.mean()


def pseudo_label_loss(*, logits_t: torch.Tensor, pseudo_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on target pseudo-labels; samples labelled ``-1`` (not confident) are left out.

    0 when no sample of the batch has a pseudo-label.
    """
    if not bool((pseudo_labels >= 0).any()):
        return logits_t.sum() * 0.0  # keeps the graph (and the device) of a normal loss
    return F.cross_entropy(logits_t.float(), pseudo_labels, ignore_index=-1)
