"""The autograd of the two operators this repository registers (cpp.py, triton_op.py). Both take (input, offset, mask,
weight, bias, stride, padding, dilation) and have a backward operator that returns [grad input, grad offset, grad mask,
grad weight]; the bias gradient is the output gradient summed here."""
from models.deform_ops.arguments import refuse_second_order


def register_autograd(op, backward_op, backend):
    def setup_context(ctx, inputs, output):
        input, offset, mask, weight, bias, stride, padding, dilation = inputs
        ctx.save_for_backward(input, offset, mask, weight)
        ctx.geometry = (stride, padding, dilation)
        ctx.has_bias = bias is not None

    def backward(ctx, grad_out):
        refuse_second_order(backend)
        input, offset, mask, weight = ctx.saved_tensors
        need_input = ctx.needs_input_grad[0]  # False for the first layer: the images need no gradient
        g_in, g_off, g_mask, g_w = backward_op(grad_out, input, offset, mask, weight, *ctx.geometry, need_input)
        g_bias = grad_out.sum((0, 2, 3)) if ctx.has_bias else None
        return g_in if need_input else None, g_off, g_mask if mask is not None else None, g_w, g_bias, None, None, None

    op.register_autograd(backward, setup_context=setup_context)
