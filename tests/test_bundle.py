import argparse
import re
import shlex
from pathlib import Path

import pytest
from safetensors.torch import load_file

from colorizer import bundle, checkpoint
from colorizer.infer import Colorizer
from colorizer.train_args import add_arguments
from tests.conftest import photo

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def test_bundle_stores_a_named_half_precision_model(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(bundle, "WEIGHTS_DIR", tmp_path)
    path = bundle.bundle(tiny_checkpoint)
    assert path == tmp_path / f"{tiny_checkpoint.name}.safetensors"
    assert all(t.dtype.is_floating_point is False or t.dtype.itemsize == 2 for t in load_file(str(path)).values())
    assert checkpoint.read_config(path)["name"] == tiny_checkpoint.name
    assert Colorizer.load(path).colorize(photo(20, 10)).size == (20, 10)


def makefile_flags(variable: str) -> list[str]:
    text = MAKEFILE.read_text().replace("\\\n", " ")
    match = re.search(rf"^{variable}\s*=(.*)$", text, flags=re.MULTILINE)
    assert match, f"{variable} is not set in the Makefile"
    return shlex.split(match.group(1))


# options added after a model was trained are absent from its record: what the code did before them
BEFORE_OPTION = {"min_crop_area": 1.0, "encoder_lr_factor": 1.0, "holdout": 0.0, "keep_epochs": False,
                 "data_share": None, "epoch_size": None, "init": None, "hinted_share": 0.5, "recolour_share": 0.0}


def stages(config: dict) -> list[dict]:
    """The training records of a model, its starting points' first (a model trained on with --init)."""
    return [*stages(config["init"]), config] if "init" in config else [config]


@pytest.mark.parametrize("name, variables", [("generic", ["GENERIC_BASE", "GENERIC"]), ("dogs", ["DOGS"])])
def test_bundled_models_record_the_documented_training_command(name, variables):
    """`make models` (and docs/models.md) must train with the flags the shipped weights were trained with,
    stage by stage."""
    makefile = MAKEFILE.read_text().replace("\\\n", " ")
    recorded_stages = stages(checkpoint.read_config(bundle.WEIGHTS_DIR / f"{name}.safetensors"))
    assert len(recorded_stages) == len(variables)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for variable, recorded in zip(variables, recorded_stages, strict=True):
        out = "runs/" + variable.lower().replace("_", "-")
        assert re.search(rf"\$\(TRAIN_FLAGS\) \$\({variable}_FLAGS\)\s+--out {out}\n", makefile), variable
        flags = makefile_flags("TRAIN_FLAGS") + makefile_flags(f"{variable}_FLAGS")
        documented = vars(parser.parse_args(["--data", "photos", "--out", "run", *flags]))
        recorded = {**BEFORE_OPTION, **recorded["train_args"]}
        # paths differ by machine; keeping every epoch's weights changes nothing in the model
        compared = documented.keys() - {"data", "val", "out", "keep_epochs"}
        assert {key: recorded.get(key, "not recorded") for key in compared} == {key: documented[key] for key in compared}
