"""Every run setting is checked for its type, with one clear error; so is an image too small for the encoder."""
import dataclasses

import pytest

from fewshot.cli.main import main
from fewshot.errors import FewShotError
from fewshot.training.config import RunConfig


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(RunConfig)])
def test_a_value_of_the_wrong_type_names_the_field(field):
    with pytest.raises(FewShotError, match=rf"^config\.yaml: {field} must be .*, got \[1, 2\] \(list\)$"):
        RunConfig.from_dict({field: [1, 2]}, source="config.yaml")


@pytest.mark.parametrize("values, message", [
    ({"lr": "1e-3"}, "lr must be a number, got '1e-3' (str); YAML reads 1e-3 as a string: write 0.001"),
    ({"steps": 2.5}, "steps must be a whole number, got 2.5"),
    ({"steps": True}, "steps must be a whole number, got True (bool)"),
    ({"bf16": "yes"}, "bf16 must be true or false, got 'yes'"),
    ({"time_limit": "soon"}, "time_limit must be a number (or left out), got 'soon' (str)"),
])
def test_typical_yaml_mistakes(values, message):
    with pytest.raises(FewShotError) as error:
        RunConfig.from_dict(values)
    assert message in str(error.value)


def test_whole_numbers_pass_for_numbers_and_none_for_optional_settings():
    config = RunConfig.from_dict({"lr": 1, "time_limit": None, "threads": 2, "options": {"n_way": 5}})
    assert config.lr == 1 and config.time_limit is None


def test_yaml_with_a_list_for_the_learning_rate_fails_clearly(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("method: protonet\nlr: [1, 2]\n")
    assert main(["train", "protonet", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "lr must be a number, got [1, 2] (list)" in capsys.readouterr().err


def test_an_image_size_too_small_for_conv4_says_what_to_pass():
    from fewshot.nets import build_encoder

    with pytest.raises(FewShotError, match="needs images of at least 16 pixels, got 3: pass --image-size 16 or more"):
        build_encoder("conv4", 1, 3)
