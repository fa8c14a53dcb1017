"""Decoders and encoder-decoders as backbones: pooling, next-token batches, generation (tiny random models)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.backbones.decoder import DecoderBackbone, Seq2SeqBackbone
from transferkit.errors import BackboneError, DataError
from transferkit.tasks.base import IGNORE_INDEX


def test_an_hf_causal_lm_is_a_decoder_backbone_pooled_by_its_last_real_token(tiny_llama_dir: Path) -> None:
    backbone = create_backbone(f"hf:{tiny_llama_dir}")
    assert isinstance(backbone, DecoderBackbone) and backbone.outputs == {"pooled", "tokens"}
    texts = ["good film", "a very boring plot was terrible"]
    with torch.no_grad():
        batch = backbone.collate(texts)
        pooled = backbone.forward_features(**batch)  # (2, 32)
        tokens = backbone.forward_tokens(**batch)
        alone = backbone.forward_features(**backbone.collate(texts[:1]))
    assert pooled.shape == (2, backbone.num_features)
    torch.testing.assert_close(pooled[0], tokens.features[0, 1])  # "good film": its 2nd token is its last
    torch.testing.assert_close(pooled[0], alone[0], atol=1e-5, rtol=1e-4)  # right padding changes nothing
    mean = create_backbone(f"hf:{tiny_llama_dir}", pooling="mean")
    with torch.no_grad():
        torch.testing.assert_close(mean.forward_features(**batch)[0], tokens.features[0, :2].mean(0))
    with pytest.raises(BackboneError, match="pooling must be 'last' or 'mean'"):
        create_backbone(f"hf:{tiny_llama_dir}", pooling="cls")


def test_layer_groups_cover_every_weight_and_lora_targets_the_four_projections(tiny_llama_dir: Path) -> None:
    from transferkit.strategies.lora import lora_targets

    backbone = create_backbone(f"hf:{tiny_llama_dir}")
    groups = backbone.layer_groups()
    assert [name for name, _ in groups] == ["stem", "block0", "block1", "neck"]  # the head is tied to the stem
    grouped = {id(p) for _, module in groups for p in module.parameters()}
    assert all(id(p) in grouped for p in backbone.parameters())
    targets = lora_targets(backbone, rank=4, names=backbone.lora_modules)
    assert sorted({name.rsplit(".", 1)[-1] for name in targets}) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert len(targets) == 8


def test_next_token_targets_are_the_completion_alone(tiny_llama_dir: Path) -> None:
    backbone = create_backbone(f"hf:{tiny_llama_dir}")
    batch, targets = backbone.lm_batch(["good film", "the plot"], ["yes", "no no"], ["a", "b"])
    ids = batch["input_ids"]
    eos = backbone.tokenizer.eos_token_id
    vocab = backbone.tokenizer.get_vocab()
    # row 0: good film | yes </s> (+ padding); the target at t is token t + 1 where it is the completion's
    assert ids[0, :4].tolist() == [vocab["good"], vocab["film"], vocab["yes"], eos]
    assert targets[0].tolist()[:4] == [IGNORE_INDEX, vocab["yes"], eos, IGNORE_INDEX]
    assert targets[1].tolist() == [IGNORE_INDEX, vocab["no"], vocab["no"], eos, IGNORE_INDEX]
    assert batch["attention_mask"].sum(1).tolist() == [4, 5]


def test_a_prompt_longer_than_the_context_names_its_origin(tiny_llama_dir: Path) -> None:
    backbone = create_backbone(f"hf:{tiny_llama_dir}", max_length=8)
    with pytest.raises(DataError, match=r"data.jsonl line 2: the prompt is 9 tokens long"):
        backbone.lm_batch(["good", " ".join(["film"] * 9)], ["yes", "no"], ["data.jsonl line 1", "data.jsonl line 2"])
    with pytest.raises(BackboneError, match="more than the 64 positions"):
        create_backbone(f"hf:{tiny_llama_dir}", max_length=65)


def test_greedy_generation_continues_with_the_models_own_argmax(tiny_llama_dir: Path) -> None:
    backbone = create_backbone(f"hf:{tiny_llama_dir}")
    vocab = {i: w for w, i in backbone.tokenizer.get_vocab().items()}
    prompts = ["good film", "a very boring plot"]
    texts = backbone.generate(prompts, max_new_tokens=3)
    for prompt, text in zip(prompts, texts, strict=True):  # batched (left-padded) = one by one, by argmax
        ids = backbone.tokenizer(prompt, return_tensors="pt")["input_ids"]
        words = []
        with torch.no_grad():
            for _ in range(3):
                logits = backbone.source_logits(backbone.forward_tokens(ids, torch.ones_like(ids)).features)
                nxt = int(logits[0, -1].argmax())
                if nxt == backbone.tokenizer.eos_token_id:
                    break
                words.append(vocab[nxt])
                ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
        assert text == " ".join(w for w in words if not w.startswith("<"))
    assert backbone.generate(prompts, max_new_tokens=3, temperature=1.0, seed=1) != []


def test_an_hf_t5_is_an_encoder_decoder_backbone(tiny_t5_dir: Path) -> None:
    backbone = create_backbone(f"hf:{tiny_t5_dir}")
    assert isinstance(backbone, Seq2SeqBackbone)
    with torch.no_grad():
        pooled = backbone.forward_features(**backbone.collate(["good film", "the plot was boring"]))
    assert pooled.shape == (2, 32)
    batch, targets = backbone.lm_batch(["good film"], ["yes no"], ["x"])
    vocab = backbone.tokenizer.get_vocab()
    assert targets[0].tolist() == [vocab["yes"], vocab["no"], backbone.tokenizer.eos_token_id]
    assert batch["decoder_input_ids"][0].tolist() == [0, vocab["yes"], vocab["no"]]  # shifted right
    with torch.no_grad():  # the logits equal the model's own forward
        ours = backbone.source_logits(backbone.forward_tokens(**batch).features)
        theirs = backbone.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                decoder_input_ids=batch["decoder_input_ids"]).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    assert len(backbone.generate(["good film"], max_new_tokens=2)) == 1
