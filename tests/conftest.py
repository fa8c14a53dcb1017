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
