import pytest

from fewshot.errors import FewShotError
from fewshot.methods import METHODS
from fewshot.nets import ENCODERS, build_encoder
from fewshot.registry import Registry


def test_build_refuses_an_option_naming_the_valid_ones():
    encoder = build_encoder("conv4", 1, 28, hidden=8)
    assert ENCODERS.options("conv4") == ["hidden"]
    with pytest.raises(FewShotError, match="the conv4 encoder takes no option width; its options: hidden"):
        build_encoder("conv4", 1, 28, width=8)
    with pytest.raises(FewShotError, match="the protonet method takes no option margin; its options: .*n_way"):
        METHODS.build("protonet", encoder=encoder, margin=1.0)
    with pytest.raises(FewShotError, match="takes no option hidden; its options: none"):
        build_encoder("flatten", 1, 28, hidden=8)
    assert METHODS.build("protonet", encoder=encoder, n_way=7).n_way == 7


def test_build_passes_anything_to_a_factory_of_keyword_arguments():
    things = Registry("thing", inputs=("size",))
    things.register("box")(lambda size, **options: (size, options))
    assert things.options("box") is None
    assert things.build("box", size=2, colour="red") == (2, {"colour": "red"})
