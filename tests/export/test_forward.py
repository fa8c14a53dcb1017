"""Features extracted on onnxruntime equal PyTorch's; a backbone that cannot run there stays on PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from support import blob_images
from transferkit.backbones import create_backbone
from transferkit.data import samples_from_arrays
from transferkit.errors import ConfigError
from transferkit.export.forward import onnx_features_forward
from transferkit.features import extract_features
from transferkit.throughput import ENGINE_VARIABLE, ExtractionFallbackWarning, extraction_plan


def _transformed(backbone, n: int = 2) -> list[torch.Tensor]:
    from PIL import Image

    return [backbone.transform(Image.fromarray(image)) for image in blob_images(n, seed=2)[0]]


def _images(n: int = 6):
    return samples_from_arrays(blob_images(n // 2, seed=1)[0], None, modality="image")


def test_onnx_features_equal_pytorch_and_the_session_is_kept_until_the_weights_change() -> None:
    backbone = create_backbone("lenet", pretrained=False).eval()
    batch = backbone.collate(_transformed(backbone))
    forward = onnx_features_forward(backbone)
    with torch.inference_mode():
        expected = backbone.forward_features(**batch).numpy()
    assert np.abs(forward(batch).numpy() - expected).max() < 1e-5
    assert onnx_features_forward(backbone) is forward
    with torch.no_grad():
        next(backbone.parameters()).add_(0.5)
    changed = onnx_features_forward(backbone)
    assert changed is not forward
    with torch.inference_mode():
        assert np.abs(changed(batch).numpy() - backbone.forward_features(**batch).numpy()).max() < 1e-5


def test_text_features_on_onnxruntime_follow_the_sequence_length(tiny_bert_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    backbone = create_backbone(f"hf:{tiny_bert_dir}").eval()
    texts = ["short", "a somewhat longer sentence than the first one here", "three words now"]
    samples = samples_from_arrays(texts, None, modality="text")
    monkeypatch.setenv(ENGINE_VARIABLE, "torch")
    eager = extract_features(backbone, samples, use_cache=False, progress=False)
    monkeypatch.setenv(ENGINE_VARIABLE, "onnx")
    fast = extract_features(backbone, samples, use_cache=False, progress=False)
    assert np.abs(fast - eager).max() < 1e-4


def test_the_default_engine_is_onnx_only_for_enough_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENGINE_VARIABLE, raising=False)
    backbone = create_backbone("lenet", pretrained=False).eval()
    items = _transformed(backbone)
    assert extraction_plan(backbone, lambda n: items[:n], 4, count=10).engine == "torch"
    assert extraction_plan(backbone, lambda n: items[:n], 4, count=10_000).engine == "onnx"


def test_a_backbone_that_does_not_trace_falls_back_to_pytorch_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("an operator the exporter does not know")

    monkeypatch.setattr(torch.onnx, "export", broken)
    monkeypatch.setenv(ENGINE_VARIABLE, "onnx")
    backbone = create_backbone("lenet", pretrained=False).eval()
    samples = _images()
    with pytest.warns(ExtractionFallbackWarning, match="does not run on onnxruntime.*operator"):
        features = extract_features(backbone, samples, use_cache=False, progress=False)
    monkeypatch.setenv(ENGINE_VARIABLE, "torch")
    assert np.array_equal(features, extract_features(backbone, samples, use_cache=False, progress=False))


def test_an_unknown_engine_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENGINE_VARIABLE, "tensorrt")
    with pytest.raises(ConfigError, match="TRANSFERKIT_EXTRACT_ENGINE='tensorrt'.*auto, torch, onnx"):
        extract_features(create_backbone("lenet", pretrained=False), _images(), use_cache=False, progress=False)


def test_a_graph_that_fails_on_a_later_batch_hands_over_to_pytorch(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    backbone = create_backbone("lenet", pretrained=False).eval()
    forward = onnx_features_forward(backbone)
    batch = backbone.collate(_transformed(backbone))

    def broken(self, *args, **kwargs):
        raise RuntimeError("indices element out of data bounds")

    monkeypatch.setattr(ort.InferenceSession, "run", broken)
    with pytest.warns(RuntimeWarning, match="failed on a batch.*out of data bounds.*PyTorch"):
        got = forward(batch)
    with torch.inference_mode():
        assert torch.equal(got, backbone.forward_features(**batch))


def test_a_graph_that_fails_on_the_example_batches_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    def broken(self, *args, **kwargs):
        raise RuntimeError("ScatterElements: indices element out of data bounds")

    monkeypatch.setattr(ort.InferenceSession, "run", broken)
    monkeypatch.setenv(ENGINE_VARIABLE, "onnx")
    backbone = create_backbone("lenet", pretrained=False).eval()
    with pytest.warns(ExtractionFallbackWarning, match="does not run on onnxruntime.*ScatterElements"):
        extract_features(backbone, _images(), use_cache=False, progress=False)
