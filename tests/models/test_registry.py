import pytest
import torch

from cnnlab.errors import UnknownNameError
from cnnlab.models import create_model, get_model_info, list_models, register_model


def test_unknown_model_suggests_closest():
    with pytest.raises(UnknownNameError, match=r"unknown model 'lenet'; did you mean lenet5\?"):
        create_model("lenet")


def test_unknown_model_without_near_name_points_to_the_list():
    with pytest.raises(UnknownNameError, match="cnnlab models"):
        create_model("qqqqqqqq")


def test_unknown_option_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="has no option 'foo'; its options are: activation, pool"):
        create_model("lenet5", foo=1)


def test_list_models_pattern():
    assert "lenet5" in list_models()
    assert list_models("lenet*") == sorted(n for n in list_models() if n.startswith("lenet"))
    assert list_models("no-such-*") == []


def test_builder_stamps_metadata_and_honours_channels():
    m = create_model("lenet5", in_chans=3, num_classes=7)
    assert m.model_name == "lenet5"
    assert m.default_input_size == (3, 32, 32)
    assert "LeCun" in m.paper
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    info = get_model_info("lenet5")
    assert info.family == "lenet" and info.input_size == (1, 32, 32)


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes must be >= 1, got 0"):
        create_model("mlp", num_classes=0)


def test_duplicate_registration_fails():
    with pytest.raises(ValueError, match="registered twice"):

        @register_model(paper="x", input_size=(1, 2, 2))
        def lenet5():  # noqa: F811
            return torch.nn.Identity()


def test_lenet5_plain_parameter_count():
    # C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850
    assert sum(p.numel() for p in create_model("lenet5").parameters()) == 61_706


def test_mlp_and_perceptron_shapes():
    assert create_model("mlp")(torch.zeros(4, 1, 28, 28)).shape == (4, 10)
    p = create_model("perceptron", num_classes=2)
    assert sum(x.numel() for x in p.parameters()) == 28 * 28 * 2 + 2
    m = create_model("mlp", hidden=(64, 32), activation="tanh")
    assert [l.out_features for l in m.modules() if isinstance(l, torch.nn.Linear)] == [64, 32, 10]
