"""Training batches: an order and augmentations that depend only on (seed, epoch), for exact resumes."""

from __future__ import annotations

import torch

import support
from transferkit.backbones import BackboneSpec, create_backbone
from transferkit.data import samples_from_arrays
from transferkit.features import BackboneDataset, EpochSampler


def test_the_order_is_a_permutation_that_depends_only_on_seed_and_epoch() -> None:
    first, again, other_seed = EpochSampler(10, seed=3), EpochSampler(10, seed=3), EpochSampler(10, seed=4)
    for sampler in (first, again, other_seed):
        sampler.set_epoch(2)
    assert list(first) == list(again) == list(first)
    assert sorted(index for index, _ in first) == list(range(10))
    assert list(first) != list(other_seed)
    again.set_epoch(3)
    assert [index for index, _ in again] != [index for index, _ in first]


def test_augmentation_follows_the_sample_seed_and_leaves_the_global_generator_alone() -> None:
    images, labels = support.blob_images(2)
    backbone = create_backbone(BackboneSpec("timm:test_efficientnet", pretrained=False, options={"image_size": 32}))
    dataset = BackboneDataset(samples_from_arrays(images, labels), backbone, [0] * len(labels), train=True)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    crop, same, other = dataset[(0, 123)][0], dataset[(0, 123)][0], dataset[(0, 124)][0]
    assert torch.equal(crop, same) and not torch.equal(crop, other)
    assert torch.equal(torch.get_rng_state(), before)  # dropout's stream does not depend on data loading
