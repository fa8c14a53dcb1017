"""The packaged weights are the real pretrained ones (integration: real weights, no network)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from transferkit.backbones import create_backbone
from transferkit.errors import BackboneError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def efficientnet(request: pytest.FixtureRequest):
    backbone = create_backbone(request.param)
    backbone.eval()
    return backbone


@pytest.mark.parametrize(
    ("photo", "expected"),
    [
        ("chelsea", {"tabby", "tiger cat", "Egyptian cat"}),
        ("coffee", {"cup", "espresso", "coffee mug"}),
    ],
)
def test_imagenet_head_names_real_photos(efficientnet, photo: str, expected: set[str]) -> None:
    from skimage import data

    assert efficientnet.preprocessing.image_size == {"efficientnet_lite0": 224, "efficientnet_lite1": 240,
                                                     "efficientnet_lite2": 260}[efficientnet.spec.name]
    image = Image.fromarray(getattr(data, photo)()).convert("RGB")
    batch = efficientnet.collate([efficientnet.transform(image, train=False)])
    with torch.inference_mode():
        logits = efficientnet.source_logits(efficientnet.forward_features(**batch))
    top3 = [efficientnet.source_labels[i] for i in logits[0].topk(3).indices.tolist()]
    assert expected & set(top3), f"{photo}: top-3 {top3}"
    assert efficientnet.source_labels[int(logits[0].argmax())] in expected


def test_random_init_has_no_source_head() -> None:
    backbone = create_backbone("efficientnet_lite0", pretrained=False)
    with pytest.raises(BackboneError, match="no pretrained source head"):
        backbone.source_logits(torch.zeros(1, backbone.num_features))


def test_text_backbone_embeds_paraphrases_closer() -> None:
    backbone = create_backbone("minilm")
    backbone.eval()
    sentences = [
        "A man is playing a guitar on stage.",
        "Someone performs a song with a guitar at a concert.",
        "The stock market fell sharply on Monday.",
        "Quarterly earnings were below expectations.",
    ]
    with torch.inference_mode():
        emb = torch.nn.functional.normalize(backbone.forward_features(**backbone.collate(sentences)), dim=-1)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.3
    assert sim[2, 3] > sim[2, 0] + 0.2

    blank = create_backbone("minilm", pretrained=False)
    blank.eval()
    with torch.inference_mode():
        rand = torch.nn.functional.normalize(blank.forward_features(**blank.collate(sentences)), dim=-1)
    rsim = rand @ rand.T
    # the trained encoder separates topics by a wider margin than random weights do
    assert (sim[0, 1] - sim[0, 2]) > (rsim[0, 1] - rsim[0, 2]) + 0.2
