"""The CTranslate2 reader against files written here, and the Whisper encoder name mapping."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from transferkit.backbones.ct2 import read_ct2_variables, whisper_encoder_state_dict
from transferkit.errors import BackboneError

_TYPE_IDS = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4, "bfloat16": 5}


def _string(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(
    path: Path,
    variables: dict[str, np.ndarray],
    aliases: dict[str, str] | None = None,
    *,
    version: int = 6,
    spec: str = "TestSpec",
    revision: int = 1,
    bfloat16: frozenset[str] = frozenset(),
) -> Path:
    """Write a CTranslate2 model file as ``ctranslate2/specs/model_spec.py`` does.

    Variables named in ``bfloat16`` are stored as bfloat16 (their float32 values truncated).
    Versions below 4 store an item size and element count instead of a dtype and byte count;
    versions below 3 store no aliases; version 1 has no spec name or revision.
    """
    out = struct.pack("<I", version)
    if version >= 2:
        out += _string(spec) + struct.pack("<I", revision)
    out += struct.pack("<I", len(variables))
    for name, value in variables.items():
        if name in bfloat16:
            dtype_name = "bfloat16"
            raw = (np.asarray(value, dtype="<f4").view("<u4") >> 16).astype("<u2").tobytes()
        else:
            dtype_name = value.dtype.name
            raw = value.astype(value.dtype.newbyteorder("<")).tobytes()
        out += _string(name) + struct.pack("<B", value.ndim)
        out += b"".join(struct.pack("<I", dim) for dim in value.shape)
        if version >= 4:
            out += struct.pack("<BI", _TYPE_IDS[dtype_name], len(raw))
        else:
            out += struct.pack("<BI", value.dtype.itemsize, value.size)
        out += raw
    if version >= 3:
        aliases = aliases or {}
        out += struct.pack("<I", len(aliases))
        for alias, target in aliases.items():
            out += _string(alias) + _string(target)
    path.write_bytes(out)
    return path


def _sample_variables() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "encoder/w32": rng.standard_normal((3, 4)).astype(np.float32),
        "encoder/w16": rng.standard_normal((2, 3, 5)).astype(np.float16),
        "encoder/q8": rng.integers(-127, 128, (4, 2)).astype(np.int8),
        "encoder/q8_scale": np.array([1.5, 2.0, 4.0, 8.0], dtype=np.float32),
        "encoder/i16": rng.integers(-3000, 3000, (6,)).astype(np.int16),
        "encoder/i32": np.arange(7, dtype=np.int32) * 100_000,
        "encoder/bf16": np.array([[1.5, -2.25], [0.0, 384.0]], dtype=np.float32),
        "encoder/num_heads": np.array(6, dtype=np.int16),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def test_round_trip_names_shapes_dtypes_values_and_aliases(tmp_path: Path) -> None:
    variables = _sample_variables()
    path = write_ct2(
        tmp_path / "model.bin",
        variables,
        aliases={"decoder/q8": "encoder/q8", "decoder/w32": "encoder/w32", "decoder/ghost": "encoder/absent"},
        bfloat16=frozenset({"encoder/bf16"}),
    )

    read = read_ct2_variables(tmp_path)  # a directory resolves to its model.bin

    assert list(read) == [*variables, "decoder/q8", "decoder/q8_scale", "decoder/w32"]
    for name, value in variables.items():
        assert read[name].shape == value.shape, name
        assert read[name].dtype == (np.float32 if name == "encoder/bf16" else value.dtype), name
        np.testing.assert_array_equal(read[name], value)
    assert read["encoder/num_heads"].ndim == 0 and int(read["encoder/num_heads"]) == 6
    np.testing.assert_array_equal(read["decoder/q8"], variables["encoder/q8"])
    np.testing.assert_array_equal(read["decoder/q8_scale"], variables["encoder/q8_scale"])
    np.testing.assert_array_equal(read["decoder/w32"], variables["encoder/w32"])
    assert "decoder/ghost" not in read  # CTranslate2 also skips aliases to absent variables
    assert read_ct2_variables(path).keys() == read.keys()


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_older_binary_versions(tmp_path: Path, version: int) -> None:
    # Before version 4 the dtype was inferred from the item size: only float32, int16, int8.
    variables = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.array([-3, 9], np.int16),
        "c": np.array([[1, -2]], dtype=np.int8),
    }
    write_ct2(tmp_path / "model.bin", variables, aliases={"d": "a"}, version=version)

    read = read_ct2_variables(tmp_path / "model.bin")

    assert set(read) == set(variables) | ({"d"} if version >= 3 else set())
    for name, value in variables.items():
        assert read[name].dtype == value.dtype
        np.testing.assert_array_equal(read[name], value)


def test_truncated_file_names_the_file(tmp_path: Path) -> None:
    path = write_ct2(tmp_path / "model.bin", _sample_variables(), aliases={"x": "encoder/w32"})
    data = path.read_bytes()
    for cut in (2, 20, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(BackboneError, match=r"model\.bin.*truncated"):
            read_ct2_variables(path)


def test_unsupported_version_and_corrupt_and_missing_files(tmp_path: Path) -> None:
    future = write_ct2(tmp_path / "future.bin", {"a": np.zeros(2, np.float32)}, version=6)
    future.write_bytes(struct.pack("<I", 99) + future.read_bytes()[4:])
    with pytest.raises(BackboneError, match=r"future\.bin.*version 99"):
        read_ct2_variables(future)

    bad_dtype = write_ct2(tmp_path / "bad.bin", {"a": np.zeros(2, np.float32)})
    data = bytearray(bad_dtype.read_bytes())
    data[data.index(b"a\0") + 2 + 1 + 4] = 42  # name, rank, one dim, then the dtype id
    bad_dtype.write_bytes(bytes(data))
    with pytest.raises(BackboneError, match=r"bad\.bin.*dtype id 42"):
        read_ct2_variables(bad_dtype)

    with pytest.raises(BackboneError, match=r"missing\.bin"):
        read_ct2_variables(tmp_path / "missing.bin")


def _tiny_encoder() -> WhisperEncoder:
    torch.manual_seed(0)
    config = WhisperConfig(
        num_mel_bins=8,
        d_model=16,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        max_source_positions=12,
    )
    return WhisperEncoder(config).eval()


def ct2_whisper_encoder_variables(encoder: WhisperEncoder) -> dict[str, np.ndarray]:
    """The variables CTranslate2's Whisper converter writes for an encoder (qkv fused)."""
    state = {k: v.detach().numpy().astype(np.float16) for k, v in encoder.state_dict().items()}
    out = {
        "encoder/conv1/weight": state["conv1.weight"],
        "encoder/conv1/bias": state["conv1.bias"],
        "encoder/conv2/weight": state["conv2.weight"],
        "encoder/conv2/bias": state["conv2.bias"],
        "encoder/position_encodings/encodings": state["embed_positions.weight"],
        "encoder/layer_norm/gamma": state["layer_norm.weight"],
        "encoder/layer_norm/beta": state["layer_norm.bias"],
        "encoder/num_heads": np.array(encoder.config.encoder_attention_heads, dtype=np.int16),
    }
    for i in range(len(encoder.layers)):
        hf, ct2 = f"layers.{i}.", f"encoder/layer_{i}/"
        attn = hf + "self_attn."
        key_bias = np.zeros_like(state[attn + "q_proj.bias"])
        out.update(
            {
                ct2 + "self_attention/linear_0/weight": np.concatenate(
                    [state[attn + p + "_proj.weight"] for p in "qkv"]
                ),
                ct2 + "self_attention/linear_0/bias": np.concatenate(
                    [state[attn + "q_proj.bias"], key_bias, state[attn + "v_proj.bias"]]
                ),
                ct2 + "self_attention/linear_1/weight": state[attn + "out_proj.weight"],
                ct2 + "self_attention/linear_1/bias": state[attn + "out_proj.bias"],
                ct2 + "self_attention/layer_norm/gamma": state[hf + "self_attn_layer_norm.weight"],
                ct2 + "self_attention/layer_norm/beta": state[hf + "self_attn_layer_norm.bias"],
                ct2 + "ffn/linear_0/weight": state[hf + "fc1.weight"],
                ct2 + "ffn/linear_0/bias": state[hf + "fc1.bias"],
                ct2 + "ffn/linear_1/weight": state[hf + "fc2.weight"],
                ct2 + "ffn/linear_1/bias": state[hf + "fc2.bias"],
                ct2 + "ffn/layer_norm/gamma": state[hf + "final_layer_norm.weight"],
                ct2 + "ffn/layer_norm/beta": state[hf + "final_layer_norm.bias"],
            }
        )
    return out


def test_whisper_encoder_state_dict_rebuilds_the_encoder(tmp_path: Path) -> None:
    source = _tiny_encoder()
    path = write_ct2(tmp_path / "model.bin", ct2_whisper_encoder_variables(source), spec="WhisperSpec")

    state = whisper_encoder_state_dict(read_ct2_variables(path))
    target = WhisperEncoder(source.config).eval()
    target.load_state_dict(state, strict=True)

    assert all(v.dtype == torch.float32 for v in state.values())
    for name, value in source.state_dict().items():  # equal up to the float16 storage
        torch.testing.assert_close(state[name], value.half().float(), rtol=0, atol=0, msg=name)
    features = torch.randn(2, 8, 24)
    with torch.no_grad():
        expected = source(features).last_hidden_state
        actual = target(features).last_hidden_state
    torch.testing.assert_close(actual, expected, rtol=1e-2, atol=1e-2)


def test_whisper_encoder_state_dict_dequantizes_int8() -> None:
    variables = ct2_whisper_encoder_variables(_tiny_encoder())
    name = "encoder/layer_0/ffn/linear_0/weight"
    weight = variables[name].astype(np.float32)
    scale = 127.0 / np.abs(weight).max(axis=1)
    variables[name] = np.rint(weight * scale[:, None]).astype(np.int8)
    variables[name + "_scale"] = scale.astype(np.float32)

    state = whisper_encoder_state_dict(variables)

    np.testing.assert_allclose(state["layers.0.fc1.weight"].numpy(), weight, atol=float((0.5 / scale).max()) + 1e-7)


def test_whisper_encoder_state_dict_missing_variable() -> None:
    variables = ct2_whisper_encoder_variables(_tiny_encoder())
    del variables["encoder/layer_1/ffn/linear_1/bias"]
    with pytest.raises(BackboneError, match="layer_1/ffn/linear_1/bias"):
        whisper_encoder_state_dict(variables)
    with pytest.raises(BackboneError, match="no Whisper encoder layers"):
        whisper_encoder_state_dict({"decoder/num_heads": np.array(6, np.int16)})


def test_a_file_split_in_parts_reads_as_the_whole(tmp_path: Path) -> None:
    whole = read_ct2_variables(write_ct2(tmp_path / "model.bin", _sample_variables(), aliases={"x": "encoder/w32"}))
    data = (tmp_path / "model.bin").read_bytes()
    cut = len(data) // 3  # anywhere, even inside a variable's bytes
    (tmp_path / "model.bin.part1").write_bytes(data[:cut])
    (tmp_path / "model.bin.part2").write_bytes(data[cut:])

    parts = read_ct2_variables([tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"])

    assert list(parts) == list(whole)
    for name in whole:
        np.testing.assert_array_equal(parts[name], whole[name])
    with pytest.raises(BackboneError, match=r"model\.bin\.part1.*truncated"):
        read_ct2_variables([tmp_path / "model.bin.part1"])  # the second half missing
    with pytest.raises(BackboneError, match=r"model\.bin\.part3"):
        read_ct2_variables([tmp_path / "model.bin.part1", tmp_path / "model.bin.part3"])


def test_whisper_dimensions_are_read_from_the_file(tmp_path: Path) -> None:
    from transferkit.backbones.whisper import load_ct2_whisper_encoder, whisper_config, whisper_config_from_ct2

    source = _tiny_encoder()
    path = write_ct2(tmp_path / "model.bin", ct2_whisper_encoder_variables(source), spec="WhisperSpec")

    config = whisper_config_from_ct2(read_ct2_variables(path))
    for field in ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "num_mel_bins",
                  "max_source_positions"):
        assert getattr(config, field) == getattr(source.config, field), field
    encoder = load_ct2_whisper_encoder(path).eval()  # no config given: built from the file's dimensions
    features = torch.randn(1, 8, 24)
    with torch.no_grad():
        torch.testing.assert_close(encoder(features).last_hidden_state, source(features).last_hidden_state,
                                   rtol=1e-2, atol=1e-2)
    with pytest.raises(BackboneError, match=r"model\.bin.*d_model 16 \(expected 32\)"):
        load_ct2_whisper_encoder(path, whisper_config(32, 2, num_mel_bins=8, max_source_positions=12))
