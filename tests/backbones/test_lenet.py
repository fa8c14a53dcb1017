"""LeNet has no pretrained weights: asking for them names the command-line flag that exists."""

from __future__ import annotations

import pytest

from support import invoke
from transferkit.backbones import create_backbone
from transferkit.errors import BackboneError


def test_pretrained_lenet_names_the_from_scratch_flag_that_fit_has() -> None:
    with pytest.raises(BackboneError) as caught:
        create_backbone("lenet")
    flags = [word.strip("()") for word in str(caught.value).split() if word.strip("()").startswith("--")]
    assert flags == ["--from-scratch"]
    assert "--from-scratch" in invoke("fit", "--help").stdout
