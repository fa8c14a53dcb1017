"""Transformers text backbones: pooling options."""

from pathlib import Path

import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.errors import BackboneError

SENTENCES = ["a short sentence", "another, somewhat longer sentence with more tokens in it"]


@torch.no_grad()
def test_normalize_gives_unit_embeddings_in_the_same_direction(tiny_bert_dir: Path) -> None:
    plain = create_backbone(f"hf:{tiny_bert_dir}").eval()
    unit = create_backbone(f"hf:{tiny_bert_dir}", normalize=True).eval()
    raw = plain.forward_features(**plain.collate(SENTENCES))  # (2, D)
    normed = unit.forward_features(**unit.collate(SENTENCES))
    torch.testing.assert_close(normed.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(normed, raw / raw.norm(dim=-1, keepdim=True))
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(2))


def test_minilm_is_normalised_by_default_and_says_so_in_its_spec() -> None:
    backbone = create_backbone("minilm")
    assert backbone.spec.options["normalize"] is True  # keys the feature cache apart from unnormalised runs
    assert create_backbone("minilm", normalize=False).spec.options["normalize"] is False


def test_unknown_pooling_is_refused(tiny_bert_dir: Path) -> None:
    with pytest.raises(BackboneError, match="pooling"):
        create_backbone(f"hf:{tiny_bert_dir}", pooling="max")


@torch.no_grad()
def test_pooled_features_are_the_masked_mean_of_the_last_hidden_state_as_before(tiny_bert_dir: Path) -> None:
    backbone = create_backbone(f"hf:{tiny_bert_dir}").eval()
    batch = backbone.collate(SENTENCES)
    hidden = backbone.model(**batch).last_hidden_state  # (B, T, D)
    weights = batch["attention_mask"].to(hidden.dtype).unsqueeze(-1)
    expected = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-6)
    assert torch.equal(backbone.forward_features(**batch), expected)
    cls = create_backbone(f"hf:{tiny_bert_dir}", pooling="cls").eval()
    assert torch.equal(cls.forward_features(**batch), hidden[:, 0])


def test_tokenize_words_maps_each_sub_word_token_to_its_word() -> None:
    backbone = create_backbone("minilm", pretrained=False, max_length=16)
    sentences = [["Obama", "visited", "Parisians", "yesterday!!"], ["Hi"]]
    words = backbone.tokenize_words(sentences)
    batch, word_ids = words.batch, words.word_ids
    assert words.sentence_ids.tolist() == [0, 1]  # both fit one window
    assert word_ids.shape == batch["input_ids"].shape and word_ids.dtype == torch.long
    for row, sentence in enumerate(sentences):
        pieces = backbone.tokenizer.convert_ids_to_tokens(batch["input_ids"][row])
        spelled = ["".join(p.removeprefix("##") for p, w in zip(pieces, word_ids[row], strict=True) if w == index)
                   for index in range(len(sentence))]
        assert spelled == [word.lower() for word in sentence]  # MiniLM's vocabulary is lowercase
        assert all(word_ids[row][~batch["attention_mask"][row].bool()] == -1)  # padding belongs to no word
        assert word_ids[row][0] == -1  # [CLS]
    assert word_ids[0].tolist().count(2) == 2  # "parisian" "##s"
    tokens = backbone.eval().forward_tokens(**batch)
    assert tokens.features.shape[:2] == word_ids.shape


def test_tokenize_words_splits_long_sentences_into_overlapping_windows() -> None:
    backbone = create_backbone("minilm", pretrained=False, max_length=6)  # 4 word tokens per window
    long = ["one", "two", "three", "four", "five", "six", "seven"]
    words = backbone.tokenize_words([long, ["hi"]], overlap=2)
    assert words.sentence_ids.tolist() == [0, 0, 0, 1]
    windows = [[w for w in row.tolist() if w >= 0] for row in words.word_ids]
    assert windows == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6], [0]]  # every word kept, 2 tokens shared
    assert words.batch["input_ids"].shape == (4, 6)
    assert backbone.tokenize_words([long], overlap=0).sentence_ids.tolist() == [0, 0]
    with pytest.raises(BackboneError, match="overlap=4 must be between 0 and 3"):
        backbone.tokenize_words([long], overlap=4)


def test_tokenize_words_needs_a_fast_tokenizer(tiny_bert_dir: Path) -> None:
    import transformers

    from transferkit.backbones.base import BackboneSpec
    from transferkit.backbones.hf import TextTransformerBackbone

    # transformers 5 makes BertTokenizer the fast one and keeps the pure-Python one as BertTokenizerLegacy
    python_tokenizer = getattr(transformers, "BertTokenizerLegacy", transformers.BertTokenizer)
    fast = create_backbone(f"hf:{tiny_bert_dir}")
    slow = TextTransformerBackbone(fast.model, python_tokenizer(str(tiny_bert_dir / "vocab.txt")),
                                   BackboneSpec("slow_bert", pretrained=False))
    with pytest.raises(BackboneError, match="'slow_bert' has a slow tokenizer"):
        slow.tokenize_words([["good", "film"]])
