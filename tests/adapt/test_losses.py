"""Each adaptation loss is a pure function with a property that could fail."""

from __future__ import annotations

import torch

from transferkit.adapt import losses


def gaussian(n: int, d: int, *, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * scale + shift


def test_gradient_reversal_is_identity_forward_and_flips_the_gradient() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    y = losses.gradient_reversal(x, coeff=0.5)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.5))


def test_dann_coefficient_ramps_from_zero_to_one() -> None:
    values = [losses.dann_coefficient(p) for p in (0.0, 0.1, 0.5, 1.0)]
    assert values[0] == 0.0
    assert values == sorted(values) and 0.99 < values[-1] <= 1.0


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_the_shift() -> None:
    same = losses.mmd_loss(features_s=gaussian(128, 8, seed=0), features_t=gaussian(128, 8, seed=1))
    near = losses.mmd_loss(features_s=gaussian(128, 8, seed=0), features_t=gaussian(128, 8, seed=1, shift=0.5))
    far = losses.mmd_loss(features_s=gaussian(128, 8, seed=0), features_t=gaussian(128, 8, seed=1, shift=2.0))
    assert abs(float(same)) < 0.05
    assert float(far) > float(near) > float(same) + 0.05


def test_coral_is_zero_for_equal_covariances_whatever_the_means() -> None:
    x = gaussian(64, 5, seed=0)
    assert float(losses.coral_loss(features_s=x, features_t=x + 3.0)) < 1e-10
    assert float(losses.coral_loss(features_s=x, features_t=2.0 * x)) > 0.01


def test_mcc_is_lower_for_confident_diagonal_predictions() -> None:
    labels = torch.arange(32) % 4
    confident = torch.nn.functional.one_hot(labels, 4).float() * 20
    confused = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    assert float(losses.mcc_loss(logits_t=confident)) < 0.05
    assert float(losses.mcc_loss(logits_t=confused)) > 0.3


def test_entropy_and_information_maximisation() -> None:
    one_class = torch.tensor([[10.0, 0.0, 0.0]] * 6)  # confident, but every sample in one class
    diverse = torch.eye(3).repeat(2, 1) * 10.0  # confident and spread over the classes
    uniform = torch.zeros(6, 3)
    assert float(losses.entropy_loss(logits_t=one_class)) < 0.01 < float(losses.entropy_loss(logits_t=uniform))
    # information maximisation also wants the classes used evenly: only the diverse batch is optimal
    assert float(losses.information_maximization_loss(logits_t=diverse)) < -1.0
    assert float(losses.information_maximization_loss(logits_t=one_class)) > -0.01


def test_domain_adversarial_loss_is_low_for_a_perfect_discriminator_and_log2_for_a_blind_one() -> None:
    perfect = losses.domain_adversarial_loss(domain_logits_s=torch.full((8, 1), 10.0),
                                             domain_logits_t=torch.full((6,), -10.0))
    blind = losses.domain_adversarial_loss(domain_logits_s=torch.zeros(8), domain_logits_t=torch.zeros(6))
    assert float(perfect) < 1e-3
    assert abs(float(blind) - torch.log(torch.tensor(2.0)).item()) < 1e-6
    # weights only reweigh samples within a domain: uniform weights change nothing
    weighted = losses.domain_adversarial_loss(domain_logits_s=torch.zeros(8), domain_logits_t=torch.zeros(6),
                                       weights_s=torch.full((8,), 3.0), weights_t=torch.full((6,), 0.5))
    assert torch.allclose(weighted, blind)


def test_multilinear_map_and_entropy_weights() -> None:
    features, probs = torch.randn(5, 3), torch.softmax(torch.randn(5, 4), dim=1)
    mapped = losses.multilinear_map(features=features, probs=probs)
    assert mapped.shape == (5, 12)
    assert torch.allclose(mapped.view(5, 4, 3)[:, 2], probs[:, 2:3] * features)
    weights = losses.entropy_weights(logits=torch.tensor([[10.0, 0.0], [0.0, 0.0]]))
    assert weights[0] > weights[1] and not weights.requires_grad


def test_pseudo_label_loss_ignores_unlabelled_samples() -> None:
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]], requires_grad=True)
    only_first = losses.pseudo_label_loss(logits_t=logits, pseudo_labels=torch.tensor([0, -1]))
    assert float(only_first.detach()) < 0.01
    none = losses.pseudo_label_loss(logits_t=logits, pseudo_labels=torch.tensor([-1, -1]))
    assert float(none.detach()) == 0.0
    none.backward()  # still part of the graph
