"""The deformable op alone, forward only (inference), against ONNX Runtime's DeformConv and the plain convolution.

Given input, offsets and mask of one layer (random offsets of about a pixel, a mask in (0, 1)), each
implementation computes the same output: our backends through deform_conv2d, ONNX Runtime through a graph
of one DeformConv node (opset 19) with the same weights, and for reference the plain 3x3 convolution in
PyTorch (NCHW and channels-last memory) and in ONNX Runtime. ONNX Runtime gets as many threads as torch.
"""
import torch
import torch.nn.functional as F

from models.deform_ops import deform_conv2d
from utils.engine.device import resolve_backend
from utils.plumbing.errors import UserError


def onnxruntime_op(op_type, inputs, out_shape, threads):
    """A function running one ONNX node (3x3, padding 1) in ONNX Runtime on `inputs`; None without onnx/onnxruntime."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, checker, helper
    except ImportError:
        return None
    node = helper.make_node(op_type, list(inputs), ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    values = [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(t.shape)) for name, t in inputs.items()]
    graph = helper.make_graph([node], op_type, values, [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {name: t.numpy() for name, t in inputs.items()}
    return lambda: torch.from_numpy(session.run(None, feed)[0])


def op_inputs(batch, in_ch, out_ch, size):
    """Input, weight, bias, offsets (about a pixel) and mask in (0, 1) of one 3x3 layer, from the current seed."""
    x = torch.randn(batch, in_ch, size, size)
    weight, bias = torch.randn(out_ch, in_ch, 3, 3) * 0.05, torch.randn(out_ch)
    offset, mask = torch.randn(batch, 18, size, size), torch.rand(batch, 9, size, size)
    return x, weight, bias, offset, mask


def perturb_predictors(layer):
    """Small non-zero offset/mask predictors, as after training (their zero init samples the regular grid)."""
    with torch.no_grad():
        for p in layer.predictor_parameters():
            p.normal_(0, 0.01)


def op_inference_rows(batch, in_ch, out_ch, size, backends, median_ms, warmup, repeats):
    """[{"op", "forward_ms", "max_abs_difference"}] for one layer shape on the CPU. Differences are to the first
    deformable row (torchvision's op by default) or to the first plain one, so a row computing something else shows."""
    torch.manual_seed(0)
    x, weight, bias, offset, mask = op_inputs(batch, in_ch, out_ch, size)
    out_shape, threads, cpu = (batch, out_ch, size, size), torch.get_num_threads(), torch.device("cpu")
    deformable, plain = {}, {}
    for backend in backends:
        try:
            resolve_backend(backend, cpu)
        except UserError:
            continue  # the model benchmark says why
        deformable[f"deform_conv2d, {backend}"] = lambda b=backend: deform_conv2d(x, offset, weight, bias, 1, 1, 1, mask, backend=b)
    runtime = onnxruntime_op("DeformConv", {"x": x, "w": weight, "offset": offset, "b": bias, "mask": mask}, out_shape, threads)
    if runtime is not None:
        deformable["ONNX Runtime DeformConv"] = runtime
    plain["F.conv2d, NCHW"] = lambda: F.conv2d(x, weight, bias, padding=1)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    plain["F.conv2d, channels-last"] = lambda: F.conv2d(x_cl, weight, bias, padding=1)
    runtime = onnxruntime_op("Conv", {"x": x, "w": weight, "b": bias}, out_shape, threads)
    if runtime is not None:
        plain["ONNX Runtime Conv"] = runtime
    rows = []
    with torch.no_grad():
        for runs in (deformable, plain):
            reference = None
            for name, fn in runs.items():
                out = fn()
                reference = out if reference is None else reference
                rows.append({"op": name, "forward_ms": median_ms(fn, cpu, warmup, repeats), "max_abs_difference": (out - reference).abs().max().item()})
    return rows


def layer_breakdown_rows(batch, conv_ch, variants, backend, median_ms, warmup, repeats):
    """Where a deformable layer's forward+backward time goes, per conv block of the network (input as in the
    network: the images need no gradient, later inputs do): the plain nn.Conv2d it replaces, the offset/mask
    predictor convolution alone, the op alone (given offsets/mask; forward, and forward+backward) and the
    whole layer. All at the same threads in one process; the excess over nn.Conv2d is what the target is about."""
    rows, in_ch = [], 3
    for block, out_ch in enumerate(conv_ch, start=1):
        for variant in variants:
            times = _breakdown_calls(variant, batch, in_ch, out_ch, block > 1, backend)
            row = {"block": block, "shape": [batch, in_ch, out_ch, 32], "model": variant, "backend": backend}
            row.update({name: median_ms(fn, torch.device("cpu"), warmup, repeats) for name, fn in times.items()})
            rows.append(row)
        in_ch = out_ch
    return rows


def _breakdown_calls(variant, batch, in_ch, out_ch, input_grad, backend):
    from models.network import make_conv

    torch.manual_seed(0)
    x = torch.randn(batch, in_ch, 32, 32, requires_grad=input_grad)
    g = torch.randn(batch, out_ch, 32, 32)
    layer = make_conv(variant, in_ch, out_ch, backend)
    perturb_predictors(layer)
    p_weight = torch.cat([m.weight for m in (layer.offset, layer.mask) if m is not None]).detach().requires_grad_()
    g_pred = torch.randn(batch, p_weight.shape[0], 32, 32)
    offset, mask = (t.detach().requires_grad_() if t is not None else None for t in layer.predict(x))
    weight, bias = layer.weight.detach().requires_grad_(), layer.bias.detach().requires_grad_()
    x_cl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(input_grad)

    def op(grad):
        with torch.set_grad_enabled(grad):
            return deform_conv2d(x_cl, offset, weight, bias, 1, 1, 1, mask, backend=backend)
    return {
        "nn.Conv2d": lambda: F.conv2d(x, weight, bias, padding=1).backward(g),
        "predictor conv": lambda: F.conv2d(x, p_weight, None, padding=1).backward(g_pred),
        "op forward": lambda: op(False),
        "op forward+backward": lambda: op(True).backward(g),
        "layer": lambda: layer(x).backward(g),
    }
