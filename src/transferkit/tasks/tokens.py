"""Word-level tasks on sub-word token features: sentences into windows, word targets onto tokens, token
outputs back onto words.

A text backbone's ``tokenize_words`` cuts each sentence into windows of at most its ``max_length``
tokens, overlapping where a sentence is longer than one window, and says which word each token comes
from. The first sub-token of a word carries the word's target; the others, the special and padding
tokens get ``IGNORE_INDEX``. In a window that continues a sentence the first word may have been cut
in two; the previous window holds it whole (the overlap), so there it carries no target. A word seen
in several windows is predicted from the mean of its logits in each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from transferkit.backbones.base import Backbone
from transferkit.errors import ConfigError
from transferkit.features import EpochSampler, _read_cached, _write_cached, cache_dir
from transferkit.heads import TransferModel
from transferkit.tasks.base import IGNORE_INDEX

Batch = tuple[dict[str, torch.Tensor], torch.Tensor]


@dataclass
class WordWindows:
    """Sentences as token windows.

    Attributes:
        batch: ``input_ids`` and ``attention_mask`` ``(N, T)``, one row per window.
        word_ids: ``(N, T)``: the word of each token in its sentence, -1 on special and padding tokens.
        sentence_ids: ``(N,)``: the sentence of each window.
        labelled: ``(N, T)`` bool: the tokens that carry their word's target (see the module docstring).
    """

    batch: dict[str, torch.Tensor]
    word_ids: torch.Tensor
    sentence_ids: torch.Tensor
    labelled: torch.Tensor

    def __len__(self) -> int:
        return len(self.sentence_ids)

    def targets(self, word_targets: Sequence[np.ndarray]) -> torch.Tensor:
        """Token targets ``(N, T)``: the word's target on labelled tokens, ``IGNORE_INDEX`` elsewhere."""
        out = torch.full(self.word_ids.shape, IGNORE_INDEX, dtype=torch.long)
        for row, sentence in enumerate(self.sentence_ids.tolist()):
            positions = self.labelled[row].nonzero().flatten()
            words = self.word_ids[row, positions]
            out[row, positions] = torch.as_tensor(np.asarray(word_targets[sentence]), dtype=torch.long)[words]
        return out

    def rows(self, rows: Sequence[int]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The batch of some windows cut to the columns any of them uses, and those columns."""
        index = torch.as_tensor(list(rows), dtype=torch.long)
        mask = self.batch["attention_mask"][index]
        columns = mask.bool().any(0).nonzero().flatten()
        return {key: value[index][:, columns] for key, value in self.batch.items()}, columns


def word_windows(backbone: Backbone, sentences: Sequence[Sequence[str]], *, overlap: int | None = None) -> WordWindows:
    """The windows of ``sentences`` (lists of words) for ``backbone``, with the tokens that carry targets.

    Raises:
        ConfigError: the backbone cannot map tokens to words (not a text transformer).
    """
    tokenize = getattr(backbone, "tokenize_words", None)
    if tokenize is None:
        raise ConfigError(f"backbone {backbone.spec.name!r} cannot tokenise words; word-level tasks need a text "
                          "transformer (minilm, mpnet, hf:...)")
    tokens = tokenize([list(words) for words in sentences], overlap=overlap)
    word_ids, sentence_ids = tokens.word_ids, tokens.sentence_ids  # (N, T), (N,)
    previous = torch.cat([torch.full_like(word_ids[:, :1], -1), word_ids[:, :-1]], dim=1)
    labelled = (word_ids >= 0) & (word_ids != previous)  # the first token of each word in the window
    continues = torch.cat([torch.zeros(1, dtype=torch.bool), sentence_ids[1:] == sentence_ids[:-1]])
    for row in continues.nonzero().flatten().tolist():
        first_word = word_ids[row][word_ids[row] >= 0][0]
        labelled[row] &= word_ids[row] != first_word  # maybe cut; whole in the previous window
    return WordWindows(tokens.batch, word_ids, sentence_ids, labelled)


class _Windows(Dataset):
    """Window indices; the collate function builds the batch (``EpochSampler`` gives ``(index, seed)``)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: int | tuple[int, int]) -> int:
        return key[0] if isinstance(key, tuple) else key


def window_loader(windows: WordWindows, targets: torch.Tensor | None, *, train: bool, batch_size: int,
                  seed: int = 0) -> DataLoader:
    """Batches ``(batch_dict, token_targets)`` of windows, padded to the longest window of the batch;
    shuffled by ``(seed, epoch)`` when training (``EpochSampler``)."""

    def collate(rows: list[int]) -> Batch:
        batch, columns = windows.rows(rows)
        if targets is None:
            return batch, torch.full((len(rows),), IGNORE_INDEX, dtype=torch.long)
        return batch, targets[torch.as_tensor(rows)][:, columns]

    sampler = EpochSampler(len(windows), seed) if train else None
    return DataLoader(_Windows(len(windows)), batch_size=batch_size, sampler=sampler, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed))


def _forward_windows(windows: WordWindows, batch_size: int,
                     forward: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> torch.Tensor:
    """``forward`` on every window's batch, gathered at the labelled tokens, in row order: ``(M, C)``."""
    chunks = []
    for start in range(0, len(windows), batch_size):
        rows = list(range(start, min(start + batch_size, len(windows))))
        batch, columns = windows.rows(rows)
        out = forward(batch)  # (B, T', C)
        chunks.append(out[windows.labelled[rows][:, columns]].float())  # (m, C)
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)


def windows_key(backbone: Backbone, sentences: Sequence[Sequence[str]]) -> str:
    digest = hashlib.sha256(f"{backbone.fingerprint()}|word-windows".encode())
    for words in sentences:
        digest.update("\x1f".join(words).encode("utf-8", "surrogatepass") + b"\x1e")
    return f"{backbone.spec.cache_key()}-tokens-{digest.hexdigest()[:24]}"


@torch.inference_mode()
def first_token_features(backbone: Backbone, sentences: Sequence[Sequence[str]], windows: WordWindows, *,
                         batch_size: int, use_cache: bool) -> np.ndarray:
    """The frozen backbone's features ``(M, D)`` at the labelled tokens, in row order, from the feature
    cache when it has them (keyed by the backbone and the words)."""
    path = cache_dir() / "features" / f"{windows_key(backbone, sentences)}.safetensors"
    shape = (int(windows.labelled.sum()), backbone.num_features)
    if use_cache:
        cached = _read_cached(path, shape)
        if cached is not None:
            return cached
    was_training = backbone.training
    backbone.eval()
    features = _forward_windows(windows, batch_size, lambda batch: backbone.forward_tokens(**batch).features)
    backbone.train(was_training)
    result = features.numpy().reshape(shape)
    if use_cache:
        _write_cached(path, result)
    return result


@torch.inference_mode()
def word_logits(model: TransferModel, windows: WordWindows, word_counts: Sequence[int], *, num_classes: int,
                batch_size: int, fallback: int) -> list[np.ndarray]:
    """Per sentence, the head's logits ``(W, C)`` of each word: the mean over the windows that label it.

    A word no window labels (a word the tokenizer drops) gets a logit of 10 for class ``fallback``.
    """
    was_training = model.training
    model.eval()
    logits = _forward_windows(windows, batch_size, lambda batch: model(**batch)).numpy().reshape(-1, num_classes)
    model.train(was_training)
    rows, positions = windows.labelled.nonzero(as_tuple=True)
    sentences = windows.sentence_ids[rows].numpy()
    words = windows.word_ids[rows, positions].numpy()
    out = []
    offsets = np.concatenate([[0], np.cumsum(word_counts)]).astype(np.int64)
    flat = offsets[sentences] + words
    sums = np.zeros((int(offsets[-1]), num_classes), np.float32)
    counts = np.zeros(int(offsets[-1]), np.float32)
    np.add.at(sums, flat, logits)
    np.add.at(counts, flat, 1.0)
    means = sums / np.maximum(counts, 1.0)[:, None]
    means[counts == 0, fallback] = 10.0
    for index in range(len(word_counts)):
        out.append(means[offsets[index]:offsets[index + 1]])
    return out
