import argparse
from dataclasses import FrozenInstanceError, fields

import pytest

from colorizer.errors import UserError
from colorizer.train_args import MAY_CHANGE, MUST_MATCH, RESUME_RULES, TrainConfig, add_arguments, flag, option


def parsed(*argv: str) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return TrainConfig.from_args(parser.parse_args(["--data", "a", "b", "--out", "run", *argv]))


def other_value(name: str, value):
    """A value that differs from `value` and that a record could hold for option `name`."""
    if name == "options":
        return '{"width": 0.5}'
    if value is None:
        return [1.0, 1.0] if name == "data_share" else 1
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    return [*value, "x"] if isinstance(value, list) else value + "x"


def test_every_option_declares_what_resuming_makes_of_it():
    assert all(option_field.metadata.get("resume") in RESUME_RULES for option_field in fields(TrainConfig))
    with pytest.raises(ValueError, match="resume must be one of"):
        option(1.0, resume="maybe")


def test_the_command_line_is_the_config_with_the_declared_defaults():
    config = parsed()
    assert config == TrainConfig(data=("a", "b"), out="run")
    assert config.sigma == 5.0 and config.recolour_share == 0.0 and config.hinted_share == 0.5
    tuned = parsed("--data-share", "1", "3", "--lr-schedule", "constant", "--keep-epochs", "--limit", "4")
    assert (tuned.data_share, tuned.lr_schedule, tuned.keep_epochs, tuned.limit) == ((1.0, 3.0), "constant", True, 4)
    record = tuned.record()  # what checkpoints keep: JSON, in the order of the options
    assert list(record) == ["command", *(f.name for f in fields(TrainConfig))]
    assert record["data"] == ["a", "b"] and record["data_share"] == [1.0, 3.0] and record["command"] == "train"
    with pytest.raises(FrozenInstanceError):
        tuned.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("argv, message", [
    (("--image-size", "30"), "--image-size must be a multiple of 32, got 30"),
    (("--recolour-share", "2"), "--recolour-share must be between 0 and 1, got 2"),
    (("--data-share", "1"), "--data-share needs one positive share per --data folder (2), got 1"),
])
def test_a_bad_config_cannot_be_built(argv, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parsed(*argv)


@pytest.mark.parametrize("name", [f.name for f in fields(TrainConfig) if f.metadata["resume"] == MUST_MATCH])
def test_resuming_with_another_value_of_a_must_match_option_is_a_one_line_error(name):
    config = parsed()
    recorded = {**config.record(), name: other_value(name, config.record()[name])}
    conflict = config.resume_conflict(recorded)
    assert conflict is not None and conflict.startswith(flag(name) + " ") and "\n" not in conflict
    assert "; resume it with the same, not " in conflict


def test_other_options_may_change_and_a_record_from_before_an_option_means_its_default():
    config = parsed()
    recorded = config.record()
    changed = {name: other_value(name, value) for name, value in recorded.items()
               if name != "command" and TrainConfig.__dataclass_fields__[name].metadata["resume"] == MAY_CHANGE}
    assert changed.keys() >= {"epochs", "lr", "workers", "device", "keep_epochs"}
    assert config.resume_conflict({**recorded, **changed}) is None
    assert config.resume_conflict({"command": "train", "epochs": 3}) is None  # every must-match option absent
    assert parsed("--mix", "0.2").resume_conflict({"epochs": 3}) == "--mix 0.5; resume it with the same, not 0.2"
    # preset options compare as JSON objects, not as text
    assert parsed("--options", '{"width":0.5}').resume_conflict({"options": '{"width": 0.5}'}) is None
