import pytest
import torch
from torch import nn

from models import ConvNet, DeformableConv, count_parameters
from models.deform_ops import deform_conv2d


@pytest.mark.parametrize("model_type", [1, 2, 3])
@pytest.mark.parametrize("conv_ch", [[8], [8, 16], [4, 8, 16]])
def test_output_shape(model_type, conv_ch):
    model = ConvNet(model_type, conv_ch)
    assert model(torch.randn(5, 3, 32, 32)).shape == (5, 10)
    convs = [m for m in model.features if isinstance(m, (nn.Conv2d, DeformableConv))]
    assert len(convs) == len(conv_ch)
    assert sum(isinstance(m, nn.ReLU) for m in model.features) == len(conv_ch) - 1


@pytest.mark.parametrize("backend", ["gather", "cpp", "torchvision"])
@pytest.mark.parametrize("modulated", [False, True])
def test_zero_offsets_equal_plain_conv(backend, modulated):
    torch.manual_seed(0)
    layer = DeformableConv(6, 7, 3, padding=1, modulated=modulated, backend=backend).double()
    conv = nn.Conv2d(6, 7, 3, padding=1).double()
    conv.load_state_dict({"weight": layer.weight, "bias": layer.bias})
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    # The offset predictor starts at zero; v2's mask starts at sigmoid(0) = 0.5 everywhere.
    scale = 0.5 if modulated else 1.0
    expected = (conv(x) - conv.bias.view(1, -1, 1, 1)) * scale + conv.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("backend", ["gather", "cpp", "torchvision"])
def test_mask_of_ones_equals_v1(backend):
    torch.manual_seed(1)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    off = torch.randn(2, 18, 8, 8, dtype=torch.float64)
    w, b = torch.randn(5, 4, 3, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    v1 = deform_conv2d(x, off, w, b, 1, 1, 1, None, backend)
    v2 = deform_conv2d(x, off, w, b, 1, 1, 1, torch.ones(2, 9, 8, 8, dtype=torch.float64), backend)
    torch.testing.assert_close(v2, v1)


def test_predictors_start_at_zero_and_parameter_counts():
    for model_type in (2, 3):
        for m in ConvNet(model_type, [8, 16]).modules():
            if isinstance(m, DeformableConv):
                preds = [m.offset] + ([m.mask] if model_type == 3 else [])
                assert all(float(p.weight.detach().abs().sum() + p.bias.detach().abs().sum()) == 0 for p in preds)
                assert m.offset.out_channels == 18 and (m.mask is None) == (model_type == 2)
    plain, v1, v2 = (count_parameters(ConvNet(t, [64, 128])) for t in (1, 2, 3))
    assert plain < v1 < v2
    assert v1 - plain == (3 * 9 + 1) * 18 + (64 * 9 + 1) * 18  # two offset predictors
