"""`cnnlab models` (moved from tests/test_cli.py)."""

from __future__ import annotations

from tests.cli.conftest import run_cli


def test_models_lists_parameters(capsys):
    code, out, _ = run_cli(["models", "lenet*", "--no-macs", "--format", "csv"], capsys)
    assert code == 0
    assert "lenet5,lenet,61706," in out


def test_models_shows_googlenet_with_and_without_auxiliary_heads(capsys):
    code, out, _ = run_cli(["models", "googlenet", "--no-macs", "--format", "markdown"], capsys)
    assert code == 0
    # The paper gives no top-1 for GoogLeNet: the top-1 and "on" cells stay empty.
    assert "| googlenet | googlenet | 13,378,280 |  | 3x224x224 |  |  | Szegedy et al. 2015, Going deeper" in out
    assert ("- googlenet: 13,378,280 parameters by default; 6,998,552 without the two training-only auxiliary "
            "heads (aux_logits=False); 6,624,904 torchvision's variant without auxiliary heads "
            "(variant='torchvision', aux_logits=False; torchvision GoogLeNet_Weights.IMAGENET1K_V1 num_params)") in out
    code, out, _ = run_cli(["models", "googlenet", "--no-macs", "--format", "csv"], capsys)
    assert out.splitlines() == [
        "model,family,parameters,GMACs,input,top-1 %,on,paper",
        'googlenet,googlenet,13378280,,3x224x224,,,"Szegedy et al. 2015, Going deeper with convolutions"',
    ]  # CSV: one row per model, no notes


def test_models_table_shortens_citations(capsys):
    code, out, _ = run_cli(["models", "resnet18", "--no-macs"], capsys)
    assert code == 0 and "He et al. 2016" in out and "Deep Residual" not in out
