"""The network and the deformable layer: shapes, initialisation, the layer's interface, the registry."""
import pytest
import torch
from torch import nn

from models.deform_ops import deform_conv2d
from models.deformable_conv import DeformableConv
from models.factory import build_model
from models.network import count_parameters
from models.registry import VARIANTS, variant_name


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("conv_ch", [[8], [8, 16], [4, 8, 16]])
def test_output_shape(variant, conv_ch):
    model = build_model(variant, conv_ch)
    assert model(torch.randn(5, 3, 32, 32)).shape == (5, 10)
    convs = [m for m in model.features if isinstance(m, (nn.Conv2d, DeformableConv))]
    assert len(convs) == len(conv_ch)
    assert sum(isinstance(m, nn.ReLU) for m in model.features) == len(conv_ch) - 1


@pytest.mark.parametrize("modulated", [False, True])
def test_zero_offsets_equal_plain_conv(any_backend, modulated):
    backend = any_backend
    torch.manual_seed(0)
    layer = DeformableConv(6, 7, 3, padding=1, modulated=modulated, backend=backend).double()
    conv = nn.Conv2d(6, 7, 3, padding=1).double()
    conv.load_state_dict({"weight": layer.weight, "bias": layer.bias})
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    # The offset predictor starts at zero; v2's mask starts at sigmoid(0) = 0.5 everywhere.
    scale = 0.5 if modulated else 1.0
    expected = (conv(x) - conv.bias.view(1, -1, 1, 1)) * scale + conv.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected)


def test_mask_of_ones_equals_v1(any_backend):
    backend = any_backend
    torch.manual_seed(1)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    off = torch.randn(2, 18, 8, 8, dtype=torch.float64)
    w, b = torch.randn(5, 4, 3, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    v1 = deform_conv2d(x, off, w, b, 1, 1, 1, None, backend)
    v2 = deform_conv2d(x, off, w, b, 1, 1, 1, torch.ones(2, 9, 8, 8, dtype=torch.float64), backend)
    torch.testing.assert_close(v2, v1)


def test_predictors_start_at_zero_and_parameter_counts():
    for variant in ("DeformConv2d", "DeformConv2dv2"):
        for m in build_model(variant, [8, 16]).deformable_convs():
            preds = [m.offset] + ([m.mask] if m.modulated else [])
            assert all(float(p.weight.detach().abs().sum() + p.bias.detach().abs().sum()) == 0 for p in preds)
            assert m.offset.out_channels == 18 and (m.mask is None) == (variant == "DeformConv2d")
    plain, v1, v2 = (count_parameters(build_model(v, [64, 128])) for v in ("Conv2d", "DeformConv2d", "DeformConv2dv2"))
    assert (plain, v1, v2) == (77_322, 88_212, 93_657)  # the README's table
    assert v1 - plain == (3 * 9 + 1) * 18 + (64 * 9 + 1) * 18  # two offset predictors


def test_weight_initialisation_is_torchvisions():
    """Same random draws as torchvision's DeformConv2d, so a seed gives the same network as before."""
    from torchvision.ops import DeformConv2d

    torch.manual_seed(5)
    ours = DeformableConv(6, 7, 3, padding=1)
    torch.manual_seed(5)
    theirs = DeformConv2d(6, 7, 3, padding=1)
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)


@pytest.mark.parametrize("modulated", [False, True])
def test_predict_gives_the_offsets_and_mask_forward_uses(modulated):
    torch.manual_seed(2)
    layer = DeformableConv(4, 5, 3, padding=1, modulated=modulated).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    offset, mask = layer.predict(x)
    assert offset.shape == (2, 18, 7, 7) and (mask is None) == (not modulated)
    torch.testing.assert_close(offset, layer.offset(x))
    if modulated:
        torch.testing.assert_close(mask, torch.sigmoid(layer.mask(x)))
    expected = deform_conv2d(x, offset, layer.weight, layer.bias, 1, 1, 1, mask, backend="torchvision")
    torch.testing.assert_close(layer(x), expected)


def test_printed_layer_shows_its_predictors():
    text = str(build_model("DeformConv2dv2", [4, 8], backend="gather"))
    assert ("(0): DeformableConv(\n      3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1), modulated=True, learn_offsets=True, "
            "backend=gather\n"
            "      (offset): Conv2d(3, 18, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
            "      (mask): Conv2d(3, 9, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n    )") in text


def test_registry_names_and_legacy_integers():
    assert [variant_name(i) for i in (1, 2, 3)] == ["Conv2d", "DeformConv2d", "DeformConv2dv2"]
    assert variant_name("DeformConv2d") == "DeformConv2d"
    with pytest.raises(ValueError, match='did you mean "DeformConv2dv2"'):
        variant_name("deformconv2dv2")
    with pytest.raises(ValueError, match="unknown model variant True"):
        variant_name(True)  # JSON true is not model_type 1
    assert all(v.family in VARIANTS for v in VARIANTS.values())  # every variant has a train/test script
