"""The one place that builds a model: the network named by its model arguments (models/registry.py NETWORKS), with
the widths its variant takes. Training, testing, checkpoints, the cost study, the offsets and the ONNX export all
call build_model; nothing else constructs a network."""
import torch

from models.convnet import ConvNet
from models.network import count_parameters, model_args
from models.registry import variant as get_variant
from models.resnet import ResNet20

CLASSES = {cls.network: cls for cls in (ConvNet, ResNet20)}


def _build(args, backend, zero_predictors, widths=None):
    args = dict(args)
    return CLASSES[args.pop("network")](**args, backend=backend, zero_predictors=zero_predictors, widths=widths)


def build_model(variant, conv_ch, deformable_layers=None, bias=True, inputs="standardized", network=None, backend="gather",
                zero_predictors=True):
    """The model these arguments describe (a checkpoint's `model_args` spread: `build_model(**state["model_args"])`);
    `network` None: the default network."""
    args = model_args({"variant": variant, "conv_ch": conv_ch, "deformable_layers": deformable_layers, "bias": bias, "inputs": inputs,
                       **({"network": network} if network else {})})
    return _build(args, backend, zero_predictors, matched_widths(args))


def matched_widths(args):
    """The unit widths a variant is built with: conv_ch, or for a parameter-matched control every width of conv_ch
    scaled by one common factor 1 + i/200 (i = 0..1000), the one whose parameter count comes closest to its target
    variant's in the same network, with the same deformable_layers and bias (found by bisection: the count grows with
    the factor)."""
    args = model_args(args)
    spec, conv_ch = get_variant(args["variant"]), args["conv_ch"]
    if spec.match_params is None:
        return list(conv_ch)
    widths = lambda i: [max(1, round(c * (1 + i / 200))) for c in conv_ch]  # noqa: E731
    with torch.device("meta"):  # counting only: no memory, no random draws
        count = lambda i: count_parameters(_build(args, "gather", True, widths(i)))  # noqa: E731
        target = count_parameters(_build({**args, "variant": spec.match_params}, "gather", True))
        low, high = 0, 1000  # the first i whose count reaches the target lies in [low, high]
        while low < high:
            mid = (low + high) // 2
            low, high = (mid + 1, high) if count(mid) < target else (low, mid)
        best = min({max(low - 1, 0), low}, key=lambda i: abs(count(i) - target))
    return widths(best)
