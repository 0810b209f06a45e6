"""Deformable convolution ops: torchvision's, and a pure-PyTorch "gather" op that is much faster on CPU.

torchvision's CPU kernel runs scalar loops on one thread (about 22x a plain conv here). The "gather" op
computes the same function as sampling + one matrix multiply, the way a convolution is im2col + GEMM:

1. For every output pixel, kernel tap and offset group, the sampling point p = base + offset and its 4
   bilinear corners (index into the channels-last input) and 4 weights. These are small tensors
   (N*Ho*Wo*K*G rows, not times channels), built with ordinary autograd ops, so the gradients w.r.t.
   offset and mask come from autograd.
2. `BilinearGather`: columns[m] = sum_j weight[m, j] * input_row[index[m, j]] over the 4 corners; a
   custom autograd Function so that backward re-gathers instead of keeping four column-sized buffers.
3. columns [N*Ho*Wo, K*C] @ weight [K*C, O]: the multiply-adds of a plain convolution, in one GEMM.

Border rule, identical to torchvision's: zero padding, i.e. each bilinear corner outside the image reads
zero (values and gradients; offsets are differentiated on the floor-based cell, as torchvision does). Checked against torchvision (values and all
gradients) in tests/test_deform_ops.py.
"""
import torch
import torchvision
from torch.nn.modules.utils import _pair

BACKENDS = ("torchvision", "gather")


def _pixel_chunks(pixels, row_floats):
    """Output-pixel ranges whose sampled columns (~1 MB) stay in cache: every pass over them then runs at
    cache speed, and no column buffer of the whole batch (75 MB at the default size) is ever allocated."""
    step = max(32, (1 << 18) // row_floats)
    return [(s, min(s + step, pixels)) for s in range(0, pixels, step)]


def _gather_columns(rows, index, weights):
    """columns[m] = sum_j weights[m, j] * rows[index[m, j]] (the 4 bilinear corners)."""
    cols = rows.index_select(0, index[:, 0]).mul_(weights[:, 0:1])
    for j in range(1, 4):
        cols.addcmul_(rows.index_select(0, index[:, j]), weights[:, j : j + 1])
    return cols


def _grouped_mm(cols, w_mat, groups, out=None):
    """cols [P, K, C] x w_mat [O, K, C/groups] per weight group -> [P, O]."""
    p, k, c = cols.shape
    o = w_mat.shape[0]
    cg, og = c // groups, o // groups
    if groups == 1:
        return torch.mm(cols.view(p, k * c), w_mat.reshape(o, -1).t(), out=out)
    outs = [cols[:, :, g * cg : (g + 1) * cg].reshape(p, -1) @ w_mat[g * og : (g + 1) * og].reshape(og, -1).t() for g in range(groups)]
    return torch.cat(outs, 1, out=out)


class SampledConv(torch.autograd.Function):
    """out[p] = columns[p] @ w_mat^T, columns sampled by bilinear gather, processed in cache-sized chunks.

    rows [N*H*W*G, C/G] (channels-last input), index/weights [P*K*G, 4], w_mat [O, K, C/groups].
    Backward re-gathers each chunk instead of storing the columns (cheap: the input stays in cache).
    """

    @staticmethod
    def forward(ctx, rows, index, weights, w_mat, groups):
        o, k, c = w_mat.shape[0], w_mat.shape[1], w_mat.shape[2] * groups
        ctx.groups = groups
        pixels = index.shape[0] * rows.shape[1] // (k * c)
        out = rows.new_empty(pixels, o)
        for s, e in _pixel_chunks(pixels, k * c):
            rs, re_ = s * k * c // rows.shape[1], e * k * c // rows.shape[1]
            cols = _gather_columns(rows, index[rs:re_], weights[rs:re_]).view(e - s, k, c)
            _grouped_mm(cols, w_mat, groups, out=out[s:e])
        ctx.save_for_backward(rows, index, weights, w_mat)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        rows, index, weights, w_mat = ctx.saved_tensors
        groups = ctx.groups
        grad_out = grad_out.contiguous()
        o, k, cpg = w_mat.shape
        c, cr = cpg * groups, rows.shape[1]
        pixels = grad_out.shape[0]
        grad_rows = torch.zeros_like(rows)
        grad_weights = weights.new_empty(weights.shape)
        grad_w = torch.zeros(w_mat.shape, dtype=w_mat.dtype, device=w_mat.device)
        og = o // groups
        for s, e in _pixel_chunks(pixels, k * c):
            rs, re_ = s * k * c // cr, e * k * c // cr
            idx, w, g_out = index[rs:re_], weights[rs:re_], grad_out[s:e]
            corners = rows.index_select(0, idx.reshape(-1)).view(-1, 4, cr)
            cols = (corners * w.unsqueeze(2)).sum(1).view(e - s, k, c)
            grad_cols = torch.empty_like(cols)
            for gi in range(groups):
                sl, ol = slice(gi * cpg, (gi + 1) * cpg), slice(gi * og, (gi + 1) * og)
                grad_w[ol].view(og, -1).addmm_(g_out[:, ol].t(), cols[:, :, sl].reshape(e - s, -1))
                grad_cols[:, :, sl] = (g_out[:, ol] @ w_mat[ol].view(og, -1)).view(e - s, k, cpg)
            grad_cols = grad_cols.view(-1, 1, cr)
            # d out / d weight_j is the corner value; d out / d row is the transpose of the gather (a scatter).
            torch.sum(corners * grad_cols, 2, out=grad_weights[rs:re_])
            grad_rows.index_add_(0, idx.reshape(-1), (w.unsqueeze(2) * grad_cols).view(-1, cr))
        return grad_rows, None, grad_weights, grad_w, None


def _bilinear_corners(py, px, height, width):
    """Corner row indices [.., 4] (clamped into the image) and weights [.., 4] (zero where a corner is outside)."""
    y0, x0 = torch.floor(py.detach()), torch.floor(px.detach())
    ly, lx = py - y0, px - x0
    y0, x0 = y0.long(), x0.long()
    indices, weights = [], []
    for dy, dx, w in ((0, 0, (1 - ly) * (1 - lx)), (0, 1, (1 - ly) * lx), (1, 0, ly * (1 - lx)), (1, 1, ly * lx)):
        y, x = y0 + dy, x0 + dx
        in_image = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        indices.append(y.clamp(0, height - 1) * width + x.clamp(0, width - 1))
        weights.append(w * in_image.to(w.dtype))
    return torch.stack(indices, -1), torch.stack(weights, -1)


def deform_conv2d_gather(input, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None):
    """Same signature and result as torchvision.ops.deform_conv2d."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, w = input.shape
    out_ch, c_per_group, kh, kw = weight.shape
    groups = c // c_per_group
    k = kh * kw
    offset_groups = offset.shape[1] // (2 * k)
    ho, wo = offset.shape[2], offset.shape[3]
    cg = c // offset_groups  # channels per offset group
    dev, dt = input.device, input.dtype

    # Sampling points, laid out [N, Ho, Wo, K, G] so that the gathered columns come out as [N*Ho*Wo, K*C].
    off = offset.view(n, offset_groups, k, 2, ho, wo).permute(0, 4, 5, 2, 1, 3)
    base_y = (torch.arange(ho, device=dev) * sh - ph).view(ho, 1, 1, 1) + (torch.arange(kh, device=dev) * dh).repeat_interleave(kw).view(1, 1, k, 1)
    base_x = (torch.arange(wo, device=dev) * sw - pw).view(1, wo, 1, 1) + (torch.arange(kw, device=dev) * dw).repeat(kh).view(1, 1, k, 1)
    py = base_y.to(dt) + off[..., 0]
    px = base_x.to(dt) + off[..., 1]
    index, weights = _bilinear_corners(py, px, h, w)
    if mask is not None:
        weights = weights * mask.view(n, offset_groups, k, ho, wo).permute(0, 3, 4, 2, 1).unsqueeze(-1)
    # Row of (image, pixel, offset group) in the channels-last input viewed as [N*H*W*G, C/G].
    index = (index + (torch.arange(n, device=dev) * (h * w)).view(n, 1, 1, 1, 1, 1)) * offset_groups
    index = index + torch.arange(offset_groups, device=dev).view(1, 1, 1, 1, offset_groups, 1)
    rows = input.permute(0, 2, 3, 1).reshape(n * h * w * offset_groups, cg)
    w_mat = weight.permute(0, 2, 3, 1).reshape(out_ch, k, c_per_group).contiguous()  # matches the column layout [K, C]
    out = SampledConv.apply(rows, index.view(-1, 4), weights.reshape(-1, 4), w_mat, groups)
    if bias is not None:
        out = out + bias
    # Back to contiguous NCHW: BatchNorm's backward on the channels-last view was measured 4x slower.
    return out.view(n, ho, wo, out_ch).permute(0, 3, 1, 2).contiguous()


def deform_conv2d(input, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None, backend="gather"):
    if backend == "torchvision":
        return torchvision.ops.deform_conv2d(input, offset, weight, bias, _pair(stride), _pair(padding), _pair(dilation), mask)
    if backend == "gather":
        return deform_conv2d_gather(input, offset, weight, bias, stride, padding, dilation, mask)
    raise ValueError(f"unknown deformable-convolution backend {backend!r}; choose one of {BACKENDS}")


def resolve_backend(name, device):
    """"auto" -> the faster op for the device. Measured (benchmark.py, README): on CPU the gather op is
    >10x faster than torchvision's scalar kernel; on CUDA torchvision has a native kernel, so it is used."""
    if name != "auto":
        return name
    return "torchvision" if torch.device(device).type == "cuda" else "gather"
