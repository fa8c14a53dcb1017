"""The HTTP service, through FastAPI's test client: answers, access, limits and malformed payloads."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from support import blob_images, tone_waves
from transferkit.data import samples_from_arrays
from transferkit.export import load_engine
from transferkit.serve import ServeSettings, create_app
from transferkit.serve.batching import MicroBatcher

KEY = {"X-API-Key": "secret"}


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def wav(wave: np.ndarray, rate: int = 16000) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def text_client(exported_runs: dict[str, Path]) -> Iterator[TestClient]:
    engine = load_engine(exported_runs["text"], "torch")
    settings = ServeSettings(api_key="secret", max_batch=4, max_body_bytes=4000, max_wait_s=0.01)
    with TestClient(create_app(engine, settings)) as client:
        yield client


@pytest.fixture(scope="module")
def image_client(exported_runs: dict[str, Path]) -> Iterator[TestClient]:
    with TestClient(create_app(load_engine(exported_runs["image"], "onnx"), ServeSettings(max_batch=3))) as client:
        yield client


def test_text_predictions_are_the_engines(text_client: TestClient, exported_runs: dict[str, Path]) -> None:
    texts = ["good great fine", "bad awful poor terrible", "fine"]
    single = [text_client.post("/predict", json={"text": text}, headers=KEY) for text in texts]
    assert all(r.status_code == 200 for r in single), single[0].text
    batch = text_client.post("/predict/batch?top_k=1", json={"texts": texts}, headers=KEY)
    assert batch.status_code == 200, batch.text
    expected = load_engine(exported_runs["text"], "torch").predict_scores(
        samples_from_arrays(texts, None, modality="text"))
    for response, row, batched in zip(single, expected, batch.json()["predictions"], strict=True):
        got = response.json()
        assert got["label"] == ["neg", "pos"][int(row.argmax())] == batched["label"]
        assert abs(got["probabilities"]["pos"] - row[1]) < 1e-6
        assert list(batched["probabilities"]) == [got["label"]]  # top_k=1
    assert [p["input"] for p in batch.json()["predictions"]] == ["texts[0]", "texts[1]", "texts[2]"]


def test_health_metadata_and_openapi(text_client: TestClient) -> None:
    assert text_client.get("/health").json() == {"status": "ok"}
    meta = text_client.get("/metadata", headers=KEY).json()
    assert meta["task"] == "classification" and meta["labels"] == ["neg", "pos"] and meta["modality"] == "text"
    assert meta["backbone"]["name"].startswith("hf:") and meta["limits"]["max_batch"] == 4
    paths = text_client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/predict/batch", "/health", "/metadata"} <= set(paths)
    assert "application/json" in paths["/predict"]["post"]["requestBody"]["content"]


def test_without_the_api_key_401(text_client: TestClient) -> None:
    for response in (text_client.post("/predict", json={"text": "good"}),
                     text_client.post("/predict", json={"text": "good"}, headers={"X-API-Key": "wrong"}),
                     text_client.post("/predict", json={"text": "good"}, headers={"X-API-Key": "sécret".encode()}),
                     text_client.get("/metadata")):
        assert response.status_code == 401
        assert "API key" in response.json()["detail"]


def test_too_large_bodies_and_batches_413(text_client: TestClient) -> None:
    large = text_client.post("/predict", json={"text": "good " * 2000}, headers=KEY)
    assert large.status_code == 413 and "limit" in large.json()["detail"]
    chunked = text_client.post("/predict", content=iter([b'{"text": "', b"good " * 1000, b'"}']),
                               headers={**KEY, "content-type": "application/json"})
    assert chunked.status_code == 413
    many = text_client.post("/predict/batch", json={"texts": ["good"] * 5}, headers=KEY)
    assert many.status_code == 413 and "at most 4" in many.json()["detail"]


@pytest.mark.parametrize(("body", "status", "fragment"), [
    (b"{not json", 400, "not valid JSON"),
    (b'["good"]', 422, "'text'"),
    (b'{"text": 5}', 422, "non-empty string"),
    (b'{"text": "   "}', 422, "non-empty string"),
    (b"\xff\xfe", 400, "not valid JSON"),
])
def test_malformed_json_is_a_4xx_with_a_message(text_client: TestClient, body: bytes, status: int,
                                                fragment: str) -> None:
    response = text_client.post("/predict", content=body, headers={**KEY, "content-type": "application/json"})
    assert response.status_code == status and fragment in response.json()["detail"]
    assert text_client.post("/predict/batch", json={"texts": "good"}, headers=KEY).status_code == 422
    assert text_client.post("/predict", files={"file": ("a.txt", b"good")}, headers=KEY).status_code == 415


def test_images_upload_and_malformed_images(image_client: TestClient) -> None:
    images, _ = blob_images(2, seed=5)
    one = image_client.post("/predict", files={"file": ("a.png", png(images[0]))})
    assert one.status_code == 200, one.text
    assert one.json()["input"] == "a.png" and set(one.json()["probabilities"]) == {"br", "tl"}
    assert abs(sum(one.json()["probabilities"].values()) - 1) < 1e-5
    batch = image_client.post("/predict/batch", files=[("files", (f"{i}.png", png(x))) for i, x in enumerate(images)])
    assert batch.status_code == 413  # 4 files, at most 3
    batch = image_client.post("/predict/batch", files=[("files", (f"{i}.png", png(x))) for i, x in
                                                       enumerate(images[:3])])
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 3
    assert batch.json()["predictions"][0]["probabilities"] == pytest.approx(one.json()["probabilities"], abs=1e-6)
    truncated = png(images[1])[:60]
    for name, data, status in (("junk.png", b"not an image at all", 400), ("cut.png", truncated, 400)):
        response = image_client.post("/predict", files={"file": (name, data)})
        assert response.status_code == status and name in response.json()["detail"]
    assert image_client.post("/predict", json={"text": "x"}).status_code == 415
    assert image_client.post("/predict", files={"other": ("a.png", png(images[0]))}).status_code == 422
    assert image_client.post("/predict", content=b"--x\r\nbroken", headers={
        "content-type": "multipart/form-data; boundary=x"}).status_code in (400, 422)
    assert image_client.get("/health").status_code == 200  # still up


def test_audio_upload_and_malformed_audio(exported_runs: dict[str, Path]) -> None:
    waves, _ = tone_waves(1, seed=5)
    with TestClient(create_app(load_engine(exported_runs["audio"], "onnx"))) as client:
        good = client.post("/predict", files={"file": ("tone.wav", wav(waves[0], 8000))})
        assert good.status_code == 200, good.text
        for data in (b"RIFF....WAVEfmt garbage", wav(np.zeros(0, np.float32)), b""):
            response = client.post("/predict", files={"file": ("bad.wav", data)})
            assert response.status_code == 400, response.text
            assert "bad.wav" in response.json()["detail"]


def test_ner_served_as_entities(exported_runs: dict[str, Path]) -> None:
    with TestClient(create_app(load_engine(exported_runs["ner"], "onnx"))) as client:
        response = client.post("/predict/batch", json={"texts": ["very good movie", "bad"]})
    assert response.status_code == 200, response.text
    assert all("entities" in p for p in response.json()["predictions"])


def test_concurrent_requests_run_as_one_batch_and_a_bad_one_fails_alone() -> None:
    calls: list[list[str]] = []

    def predict(items: list[str]) -> list[str]:
        calls.append(items)
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    async def scenario() -> list[object]:
        batcher = MicroBatcher(predict, max_batch=16, max_wait_s=0.2)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit([f"x{i}", f"y{i}"]) for i in range(3)),
                                        batcher.submit(["bad"]), return_exceptions=True)
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    assert results[:3] == [["X0", "Y0"], ["X1", "Y1"], ["X2", "Y2"]]
    assert isinstance(results[3], ValueError)
    assert len(calls[0]) == 7  # all four requests in the first batch, then each alone
    assert len(calls) == 5
