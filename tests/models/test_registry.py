import pickle
from copy import deepcopy

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.models import (
    create_model,
    get_model_info,
    list_models,
    main_output,
    model_label,
    register_model,
    short_citation,
    split_outputs,
)
from cnnlab.models.lenet import lenet5 as lenet5_builder
from cnnlab.models.registry import INFO_ATTRIBUTE

# What the registry used to stamp onto every model, each as its own attribute.
OLD_STAMPS = ("model_name", "paper", "default_input_size", "reported")


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


def test_info_of_a_name():
    info = get_model_info("lenet5")
    assert info.name == "lenet5" and info.family == "lenet" and info.input_size == (1, 32, 32)
    assert info.paper.startswith("LeCun, Bottou, Bengio, Haffner 1998") and info.short_paper == "LeCun et al. 1998"
    assert info.reported.top1 == pytest.approx(99.05) and info.reported.dataset == "MNIST" and info.reported.source
    assert info.params == 61_706 and info.build_options == {}
    assert info.builder is lenet5_builder and "activation" in info.options


def test_info_of_a_built_model_describes_that_instance():
    m = create_model("lenet5", in_chans=3, num_classes=7)
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    info = get_model_info(m)
    assert info.name == "lenet5" and info.input_size == (3, 32, 32)  # the paper's is (1, 32, 32)
    assert info.build_options == {"in_chans": 3, "num_classes": 7}
    assert info.paper == get_model_info("lenet5").paper and info.params == 61_706  # params: of the name
    # Calling the builder directly records the same, and the image size follows image_size.
    assert get_model_info(lenet5_builder()).input_size == (1, 32, 32)
    mlp = create_model("mlp", in_chans=3, image_size=20)
    assert get_model_info(mlp).input_size == (3, 20, 20) and get_model_info("mlp").input_size == (1, 28, 28)
    with torch.device("meta"):
        vit = create_model("deit_tiny", image_size=64)
    assert get_model_info(vit).input_size == (3, 64, 64)


def test_info_survives_deepcopy_pickle_and_wrappers():
    m = create_model("resnet20", in_chans=1)
    for copy in (deepcopy(m), pickle.loads(pickle.dumps(m)), nn.DataParallel(m)):
        info = get_model_info(copy)
        assert info.name == "resnet20" and info.input_size == (1, 32, 32)
    assert get_model_info(pickle.loads(pickle.dumps(m))).builder is get_model_info("resnet20").builder


def test_only_one_attribute_is_set_on_a_built_model():
    m = create_model("lenet5")
    assert [k for k in vars(m) if "info" in k or k in OLD_STAMPS] == [INFO_ATTRIBUTE]
    for attr in OLD_STAMPS:
        assert not hasattr(m, attr), attr


def test_module_the_registry_did_not_build():
    foreign = nn.Sequential(nn.Conv2d(1, 2, 3))
    with pytest.raises(CnnlabError, match="Sequential was not built by cnnlab's model registry"):
        get_model_info(foreign)
    assert get_model_info(foreign, default=None) is None
    assert model_label(foreign) == "Sequential" and model_label(create_model("mlp")) == "mlp"
    with pytest.raises(UnknownNameError, match="did you mean lenet5"):
        get_model_info("lenet", default=None)  # a default never hides a misspelt name
    with pytest.raises(TypeError, match="got int"):
        get_model_info(3)


@pytest.mark.parametrize(
    "paper,short",
    [
        ("He, Zhang, Ren, Sun 2016, Deep Residual Learning for Image Recognition", "He et al. 2016"),
        ("Simonyan & Zisserman 2015, Very Deep Convolutional Networks", "Simonyan & Zisserman 2015"),
        ("Lin, Chen, Yan 2014, Network In Network", "Lin et al. 2014"),
        ("Szegedy et al. 2015, Going deeper with convolutions", "Szegedy et al. 2015"),
        ("Rosenblatt 1958; a single sigmoid neuron / linear classifier", "Rosenblatt 1958"),
        ("Hinton and Salakhutdinov 2006, Reducing the dimensionality", "Hinton & Salakhutdinov 2006"),
        ("No year here, a title", "No year here"),
    ],
)
def test_short_citation(paper, short):
    assert short_citation(paper) == short


def test_googlenet_counts_with_and_without_auxiliary_heads():
    info = get_model_info("googlenet")
    assert info.params == 13_378_280  # the default build: two training-only auxiliary heads included
    variants = {tuple(sorted(v.options.items())): v.count for v in info.params_variants}
    assert variants == {
        (("aux_logits", False),): 6_998_552,  # the paper variant as it runs at test time
        (("aux_logits", False), ("variant", "torchvision")): 6_624_904,  # torchvision's published count
    }
    # get_model_info(model) of a build without aux heads still names the same record
    with torch.device("meta"):
        assert get_model_info(create_model("googlenet", aux_logits=False)).build_options == {"aux_logits": False}


def test_main_output_and_split_outputs():
    logits = torch.randn(2, 5)
    assert main_output(logits) is logits and split_outputs(logits) == (logits, ())
    googlenet = create_model("googlenet", num_classes=5).train()
    out = googlenet(torch.randn(2, 3, 64, 64))
    main, aux = split_outputs(out)
    assert main is out.logits and main_output(out) is out.logits and len(aux) == 2
    assert split_outputs((logits, None)) == (logits, ())  # a head that did not run


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes must be >= 1, got 0"):
        create_model("mlp", num_classes=0)


def test_duplicate_registration_fails():
    with pytest.raises(ValueError, match="registered twice"):

        @register_model(paper="x", input_size=(1, 2, 2))
        def lenet5():
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
