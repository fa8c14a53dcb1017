"""Every registered domain-adaptation method has a config class: defaults, checked keys, a grid over its fields."""

from __future__ import annotations

import dataclasses

import pytest

from transferkit.adapt import DA_METHODS
from transferkit.errors import ConfigError


@pytest.mark.parametrize("name", DA_METHODS.names())
def test_method_config_contract(name: str) -> None:
    entry = DA_METHODS.get(name)
    assert dataclasses.is_dataclass(entry.config) and entry.config.__name__.endswith("Config")
    assert entry.settings() == entry.config()  # every hyperparameter has a default
    keys = [f.name for f in dataclasses.fields(entry.config)]
    assert set(entry.grid) <= set(keys), "the grid searches the config's fields"
    for point in ({key: values[0] for key, values in entry.grid.items()},):
        assert dataclasses.asdict(entry.settings(point)).items() >= point.items()
    with pytest.raises(ConfigError, match=f"adaptation method '{name}' has no setting 'nope'") as caught:
        entry.settings({"nope": 1})
    assert all(key in str(caught.value) for key in keys)


def test_text_values_are_read_as_the_field_types_and_bad_ones_refused() -> None:
    cbst = DA_METHODS.get("cbst")
    assert cbst.settings({"C": "0.5", "align": "true", "rounds": "3"}) == cbst.config(C=0.5, align=True, rounds=3)
    with pytest.raises(ConfigError, match="rounds='many'.*an integer"):
        cbst.settings({"rounds": "many"})
    with pytest.raises(ConfigError, match="standardise must be one of domain, source"):
        cbst.settings({"standardise": "joint"})
    assert DA_METHODS.get("self_training").settings({"threshold": "none"}).threshold is None
