"""Zeiler & Fergus's top-9 patches, cropped to the receptive field (``cnnlab viz patches``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from click.testing import CliRunner

from cnnlab.analysis import Field
from cnnlab.cli import cli
from cnnlab.data import load_dataset
from cnnlab.errors import UnknownNameError
from cnnlab.models import create_model
from cnnlab.viz.activations import layer_output, model_input
from cnnlab.viz.patches import OUTSIDE, crop_field, layer_field, oversized_field_note, plot_top_patches, top_patches


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_root):
    """A LeNet-5 trained for one epoch on 300 MNIST images: a real run folder, in seconds."""
    import cnnlab

    out = tmp_path_factory.mktemp("patches") / "run"
    config = cnnlab.TrainConfig(model="lenet5", data="mnist", data_root=str(data_root), epochs=1, train_subset=300,
                                val_size=100, eval_test_every_epoch=False, out=str(out))
    return cnnlab.train(config, quiet=True)


@pytest.fixture(scope="module")
def test_images(tiny_run, data_root):
    data = load_dataset("mnist", "test", data_root)
    return data.images[:300], data.labels[:300]


def test_lenet_c3_field_matches_the_recurrence_by_hand():
    # c1 5x5: r 5, j 1, start 2; s2 2x2/2: r 6, j 2, start 2.5; c3 5x5: r 6 + 4*2 = 14, j 2, start 2.5 + 2*2 = 6.5
    field = layer_field(create_model("lenet5"), "features.c3", (1, 32, 32))
    assert field.size == (14, 14) and field.jump == (2, 2) and field.start == (6.5, 6.5)
    assert layer_field(create_model("lenet5"), "features.c1", (1, 32, 32)).size == (5, 5)


def test_fields_of_blocks_and_global_layers():
    resnet = create_model("resnet20", width=4)
    assert layer_field(resnet, "layer1.0", (3, 32, 32)).size == (7, 7)  # conv1 3x3, then the block's two 3x3
    with pytest.raises(ValueError, match="choose a convolution or pooling layer"):
        layer_field(create_model("lenet5"), "classifier.f6", (1, 32, 32))  # a vector, not maps


def test_crop_is_the_square_around_the_unit_and_gray_outside():
    image = torch.arange(100, dtype=torch.float32).view(1, 10, 10)
    field = Field(size=(5, 5), jump=(2, 2), start=(2.0, 2.0), grid=(3, 3))
    assert torch.equal(crop_field(image, field, (1, 1)), image[:, 2:7, 2:7])  # centre (4, 4)
    even = Field(size=(6, 6), jump=(2, 2), start=(2.5, 2.5), grid=(4, 4))  # a 2x2 pooling's half-pixel centre
    assert torch.equal(crop_field(image, even, (0, 1)), image[:, 0:6, 2:8])
    padded = Field(size=(3, 3), jump=(1, 1), start=(0.0, 0.0), grid=(10, 10))  # 3x3 conv with padding 1
    crop = crop_field(image, padded, (0, 0))
    assert crop.shape == (1, 3, 3)
    assert torch.equal(crop[0, 1:, 1:], image[0, :2, :2])
    assert (crop[0, 0] == OUTSIDE).all() and (crop[0, :, 0] == OUTSIDE).all()


def test_top_patches_are_the_strongest_and_their_crops_reproduce_the_activation(tiny_run, test_images):
    images, labels = test_images
    model, info = tiny_run.model, tiny_run.data_info
    field, patches = top_patches(model, "features.c3", images, labels, info, channels=[0, 5], k=9, batch_size=128)
    assert field.size == (14, 14)
    maps = layer_output(model, model.features.c3, model_input(images, info))  # (N, 16, 10, 10)
    for ch in (0, 5):
        items = patches[ch]
        assert len(items) == 9
        best = maps[:, ch].flatten(1).max(1).values.topk(9).values
        assert torch.allclose(torch.tensor([p.activation for p in items]), best, atol=1e-5)
        for p in items:
            assert p.patch.shape == (1, 14, 14)  # the receptive field's size
            assert p.label == int(labels[p.image_index])
        # Oracle: the network up to c3, run on the crop alone, gives that unit's activation,
        # so the crop is exactly (and all of) what the unit sees.
        crop = items[0].patch.unsqueeze(0)
        x = (crop - info["mean"][0]) / info["std"][0]
        with torch.no_grad():
            alone = model.features[:4](x)  # c1, tanh, s2, c3 -> (1, 16, 1, 1)
        assert alone.shape[-2:] == (1, 1)
        assert float(alone[0, ch, 0, 0]) == pytest.approx(items[0].activation, abs=1e-4)


def test_bad_layer_and_channels_say_what_exists(tiny_run, test_images):
    images, labels = test_images
    with pytest.raises(UnknownNameError, match="features.c3"):
        top_patches(tiny_run.model, "features.c4", images, labels, tiny_run.data_info, channels=[0])
    with pytest.raises(ValueError, match="16 channels"):
        top_patches(tiny_run.model, "features.c3", images, labels, tiny_run.data_info, channels=[16])


def test_figure_has_one_titled_block_of_nine_per_channel(tiny_run, test_images):
    images, labels = test_images
    field, patches = top_patches(tiny_run.model, "features.s2", images, labels, tiny_run.data_info)
    assert list(patches) == [0, 1, 2, 3, 4, 5]  # default: the first 8 channels, and s2 has 6
    patches = {ch: patches[ch] for ch in (0, 1, 2)}
    fig = plot_top_patches(patches, field, layer="features.s2", classes=tiny_run.data_info["classes"])
    assert len(fig.axes) == 27
    assert all(ax.images[0].get_array().shape == (6, 6) for ax in fig.axes)  # s2's 6x6 field
    assert [t.get_text() for t in fig.texts if t is not fig._suptitle] == ["channel 0", "channel 1", "channel 2"]
    assert "6x6 receptive field" in fig._suptitle.get_text()
    first = patches[0][0]
    assert fig.axes[0].get_title() == f"{first.label}: {first.activation:.2f}"
    plt.close(fig)


def test_cli_writes_the_png(tiny_run):
    result = CliRunner().invoke(cli, ["viz", "patches", str(tiny_run.path), "--layer", "features.c3", "--channels", "0,1",
                                      "--limit", "200"])
    assert result.exit_code == 0, result.output
    assert (tiny_run.path / "patches-features.c3.png").stat().st_size > 5000


def test_oversized_field_note_only_when_the_field_exceeds_the_padded_input():
    big = Field(size=(40, 40), jump=(4, 4), start=(1.5, 1.5), grid=(3, 3))
    note = oversized_field_note(big, "features.c5", (28, 28), pad=2)
    assert note == ("note: features.c5's receptive field (40) is larger than the 32x32 input, "
                    "so each patch holds the whole image, placed where the unit looks")
    assert oversized_field_note(big, "x", (28, 28), pad=6) is None  # 40x40 after padding: fits
