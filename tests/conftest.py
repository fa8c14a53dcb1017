"""Shared fixtures: no network, a private feature cache, and tiny models and data built here."""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the commands' report page and MLflow tracking are off unless a test turns them on (--report, --track); a
# test that tracks points MLFLOW_TRACKING_URI at its tmp_path, so nothing is written into the checkout
os.environ["TRANSFERKIT_REPORT"] = "0"
os.environ["TRANSFERKIT_TRACK"] = "0"
os.environ.pop("MLFLOW_TRACKING_URI", None)


class _NoNetwork(socket.socket):
    def connect(self, address):  # type: ignore[override]
        if self.family == socket.AF_UNIX:  # local only: DataLoader workers pass tensors through these
            return super().connect(address)
        raise RuntimeError(f"tests must not use the network (tried {address})")


socket.socket = _NoNetwork  # type: ignore[misc]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path_factory.mktemp("cache")))


from support import WORDS  # noqa: E402


@pytest.fixture(autouse=True)
def _keep_warning_format() -> Iterator[None]:
    """The CLI shortens warnings.formatwarning for its own process; undo that after each test."""
    original = warnings.formatwarning
    yield
    warnings.formatwarning = original


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT with a word-level vocabulary, saved like a hub model."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def exported_runs(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> dict[str, Path]:
    """Runs of tiny models, fitted and exported to ONNX once per session (``RUN/onnx``; the text run also
    int8): ``image`` (timm test_efficientnet, 32 px), ``text`` (the 2-layer BERT), ``audio`` (Whisper
    tiny.en, random weights), ``ner`` (the BERT, token head) and ``lora`` (the BERT with a LoRA adapter)."""
    from support import blob_images, sentiment_texts, tagged_sentences, tone_waves
    from transferkit.estimator import TransferEstimator
    from transferkit.export import export_onnx

    root = tmp_path_factory.mktemp("exported")
    bert = f"hf:{tiny_bert_dir}"
    images, image_labels = blob_images(6)
    texts, text_labels = sentiment_texts(6)
    waves, wave_labels = tone_waves(4)
    sentences, tags = tagged_sentences(16)
    fits = {
        "image": (dict(backbone="timm:test_efficientnet", pretrained=False, backbone_options={"image_size": 32}),
                  images, image_labels),
        "text": (dict(backbone=bert), texts, text_labels),
        "audio": (dict(backbone="whisper_tiny_en", pretrained=False), waves, wave_labels),
        "ner": (dict(backbone=bert, task="ner", strategy_params={"c": 0.5}), sentences, tags),
        "lora": (dict(backbone=bert, strategy="lora", epochs=1, batch_size=6, strategy_params={"r": 4}), texts,
                 text_labels),
    }
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFERKIT_CACHE", str(root / "cache"))
        for name, (options, X, y) in fits.items():
            import torch

            torch.manual_seed(0)
            run = TransferEstimator(progress=False, **options).fit(X, y).save(root / name)
            export_onnx(run, quantize=name == "text")
            runs[name] = run
    return runs
DECODER_WORDS = [*WORDS, "pos", "neg", "title", "review", ":", "?", "yes", "no", "answer"]


def _word_tokenizer(special: list[str]):  # noqa: ANN202
    """A fast word-level tokenizer over ``DECODER_WORDS`` (special tokens first)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate([*special, *DECODER_WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece()  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="</s>"), len(vocab)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama causal LM with a word-level vocabulary, saved like a hub model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny_llama")
    tokenizer, size = _word_tokenizer(["<pad>", "<unk>", "</s>"])
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(vocab_size=size, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, eos_token_id=2, bos_token_id=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # output embeddings wide enough for LoRA alone (they stay frozen) to reach low losses
        model.get_input_embeddings().weight.normal_(0.0, 0.3)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer T5 encoder-decoder with a word-level vocabulary (no T5 weights can be had offline)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny_t5")
    tokenizer, size = _word_tokenizer(["<pad>", "</s>", "<unk>"])
    tokenizer.save_pretrained(folder)
    config = T5Config(vocab_size=size, d_model=32, d_kv=16, d_ff=48, num_layers=2, num_decoder_layers=2,
                      num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder
