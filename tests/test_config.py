import dataclasses

import pytest

from rlcourse.config import ConfigError, apply_overrides, config_from_dict
from rlcourse.tabular.td_control import TDControlConfig


@pytest.mark.parametrize("field, value, message", [
    ("alpha", 0.0, r"TDControlConfig.alpha = 0.0 is out of range: it must be in \(0, 1\]"),
    ("alpha", 1.5, r"TDControlConfig.alpha = 1.5 is out of range: it must be in \(0, 1\]"),
    ("gamma", -0.1, r"TDControlConfig.gamma = -0.1 is out of range: it must be in \[0, 1\]"),
    ("epsilon_end", 2, r"TDControlConfig.epsilon_end = 2 is out of range: it must be in \[0, 1\]"),
    ("exploration_fraction", float("nan"), r"exploration_fraction = nan must be a finite number"),
    ("q_init", float("inf"), r"TDControlConfig.q_init = inf must be a finite number"),
    ("alpha", "0.1", r"TDControlConfig.alpha = '0.1' must be a number"),
    ("method", "dqn", r"TDControlConfig.method = 'dqn' is not allowed: it must be one of 'q-learning'"),
])
def test_bad_values_name_field_and_range(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TDControlConfig(**{field: value})


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TDControlConfig().alpha = 0.5


def test_overrides_parse_strings_by_field_type():
    config = apply_overrides(TDControlConfig(), {"alpha": "0.5", "gamma": "1", "method": "sarsa"})
    assert config == TDControlConfig(alpha=0.5, gamma=1.0, method="sarsa")
    assert isinstance(config.gamma, float)


def test_overrides_reject_unknown_and_bad_values():
    with pytest.raises(ConfigError, match="has no field 'alpah'.*alpha"):
        apply_overrides(TDControlConfig(), {"alpah": "0.5"})
    with pytest.raises(ConfigError, match="TDControlConfig.gamma = 'abc' must be a number"):
        apply_overrides(TDControlConfig(), {"gamma": "abc"})
    with pytest.raises(ConfigError, match=r"alpha = 3.0 is out of range"):
        apply_overrides(TDControlConfig(), {"alpha": "3"})


def test_config_round_trips_through_a_dict():
    config = TDControlConfig(method="expected-sarsa", alpha=0.3)
    assert config_from_dict(TDControlConfig, dataclasses.asdict(config)) == config
