"""`transferkit serve` as a real uvicorn process on 127.0.0.1: started, asked, refused, still up, stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import transferkit


class _LoopbackOnly(socket.socket.__mro__[1]):  # the real socket class under the tests' network ban
    def connect(self, address):  # type: ignore[no-untyped-def]
        if address[0] not in ("127.0.0.1", "::1"):
            raise RuntimeError(f"tests must not use the network (tried {address})")
        return super().connect(address)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(exported_runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import httpx

    monkeypatch.setattr(socket, "socket", _LoopbackOnly)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(transferkit.__file__).parents[1]), "HF_HUB_OFFLINE": "1",
           "TRANSFERKIT_CACHE": str(tmp_path / "cache"), "TRANSFERKIT_API_KEY": "secret"}
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "transferkit", "serve", str(exported_runs["text"]), "--port",
                                str(port), "--engine", "onnx", "--max-body-mb", "0.01"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up in 120 s"
            time.sleep(0.3)
        yield url
        assert process.poll() is None, "the server went down"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_a_real_server_answers_refuses_and_stays_up(server: str) -> None:
    import httpx

    key = {"X-API-Key": "secret"}
    with httpx.Client(base_url=server, timeout=30) as client:
        answer = client.post("/predict", json={"text": "good great"}, headers=key)
        assert answer.status_code == 200 and answer.json()["label"] in ("neg", "pos")
        assert client.post("/predict", json={"text": "good great"}).status_code == 401
        assert client.post("/predict", json={"text": "good " * 4000}, headers=key).status_code == 413
        assert client.post("/predict", content=b"{oops", headers={**key, "content-type": "application/json"}
                           ).status_code == 400
        assert client.post("/predict/batch", json={"texts": ["good"] * 65}, headers=key).status_code == 413
        assert client.get("/metadata", headers=key).json()["engine"] == "onnx"
        assert client.get("/openapi.json").status_code == 200
        assert client.post("/predict/batch", json={"texts": ["good", "bad"]}, headers=key).status_code == 200
