"""The "gather" backend: deformable convolution in pure PyTorch, what `auto` falls back to when the C++
kernel (cpp.py) cannot be built.

torchvision's CPU kernel runs scalar loops (measured ~35x a plain conv layer here, see README). The
"gather" op computes the same function the way a convolution is im2col + GEMM:

1. Sampling points p = regular grid + offset, for every output pixel, kernel tap and offset group
   (small tensors: N*Ho*Wo*K*G entries, not times channels). Their 4 bilinear corners index rows of the
   zero-padded, channels-last input.
2. `SampledConv`, a custom autograd Function, walks the output pixels in cache-sized chunks: gather the
   chunk's columns (4 corner rows, weighted), then one GEMM with the weights. Backward re-gathers each
   chunk, so no column buffer of the whole batch (75 MB at the default size) is ever stored, and writes
   the gradients w.r.t. input (a scatter, the transpose of the gather), points, mask and weights itself.

Border rule, identical to torchvision's: zero padding, i.e. each bilinear corner outside the image reads
zero (values and gradients; offsets are differentiated on the floor-based cell, as torchvision does).
Checked against torchvision, values and every gradient, in tests/test_deform_ops.py.
"""
import torch
from torch.nn.modules.utils import _pair

from models.deform_ops.arguments import refuse_second_order


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


def _corner_rows_and_weights(py, px, height, width):
    """Bilinear corners of the sampling points py/px [N, Ho, Wo, K, G] (plain tensors, no autograd).

    The input is read zero-padded (1 row/column before, 2 after: see `_padded_rows`), and the points are
    clamped to [-1, H] x [-1, W]: every corner then lies inside the padded image, so the four corner rows
    are base, base+1, base+Wp, base+Wp+1 with no per-corner bounds checks; a corner in the padding reads
    zero, exactly torchvision's rule. Returns rows [M, 4], weights [M, 4], ly, lx [M], and `moving` [M]:
    False where the clamp was active (the point is too far outside for any corner to see the image).
    """
    images, offset_groups = py.shape[0], py.shape[-1]
    flat_y = py.reshape(-1).clamp(-1, height)
    flat_x = px.reshape(-1).clamp(-1, width)
    moving = (flat_y == py.reshape(-1)) & (flat_x == px.reshape(-1))
    y0f, x0f = torch.floor(flat_y), torch.floor(flat_x)
    ly, lx = flat_y - y0f, flat_x - x0f
    hp, wp = height + 3, width + 3
    per_image = flat_y.numel() // images
    image = torch.arange(images, device=py.device).repeat_interleave(per_image)
    base = image * (hp * wp) + (y0f.long() + 1) * wp + (x0f.long() + 1)
    group = torch.arange(offset_groups, device=py.device).repeat(flat_y.numel() // offset_groups)
    step = torch.tensor([0, 1, wp, wp + 1], device=py.device)
    index = (base.unsqueeze(1) + step) * offset_groups + group.unsqueeze(1)
    wy, wx = torch.stack((1 - ly, ly), 1), torch.stack((1 - lx, lx), 1)
    weights = (wy.unsqueeze(2) * wx.unsqueeze(1)).view(-1, 4)
    return index, weights, ly, lx, moving


def _padded_rows(input, offset_groups):
    """Channels-last input, zero-padded by 1 before and 2 after in H and W, as rows [N*Hp*Wp*G, C/G]."""
    n, c, h, w = input.shape
    padded = torch.nn.functional.pad(input, (1, 2, 1, 2))
    return padded.permute(0, 2, 3, 1).reshape(n * (h + 3) * (w + 3) * offset_groups, c // offset_groups)


class SampledConv(torch.autograd.Function):
    """out[p] = columns[p] @ w_mat^T with the columns bilinearly sampled at (py, px), in cache-sized chunks.

    rows [N*Hp*Wp*G, C/G] (the padded channels-last input of `_padded_rows`), py/px [N, Ho, Wo, K, G] sampling points, mask of the same
    shape or None, w_mat [O, K, C/groups]. No column buffer of the whole batch is kept: backward re-gathers
    each chunk, and writes the gradients w.r.t. the points and the mask directly (the derivative of the
    bilinear weights) instead of through a graph of a dozen [M, 4]-sized autograd ops.
    """

    @staticmethod
    def forward(ctx, rows, py, px, mask, w_mat, groups, height, width):
        index, raw, _, _, _ = _corner_rows_and_weights(py, px, height, width)
        weights = raw if mask is None else raw * mask.reshape(-1, 1)
        o, k, c = w_mat.shape[0], w_mat.shape[1], w_mat.shape[2] * groups
        cr = rows.shape[1]
        pixels = index.shape[0] * cr // (k * c)
        out = rows.new_empty(pixels, o)
        for s, e in _pixel_chunks(pixels, k * c):
            rs, re_ = s * k * c // cr, e * k * c // cr
            cols = _gather_columns(rows, index[rs:re_], weights[rs:re_]).view(e - s, k, c)
            _grouped_mm(cols, w_mat, groups, out=out[s:e])
        ctx.save_for_backward(rows, py, px, mask, w_mat)
        ctx.geometry = (groups, height, width)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        refuse_second_order("gather")
        rows, py, px, mask, w_mat = ctx.saved_tensors
        groups, height, width = ctx.geometry
        index, raw, ly, lx, moving = _corner_rows_and_weights(py, px, height, width)  # recomputed: cheaper than storing
        weights = raw if mask is None else raw * mask.reshape(-1, 1)
        grad_out = grad_out.contiguous()
        o, k, cpg = w_mat.shape
        c, cr, og = cpg * groups, rows.shape[1], o // groups
        need_rows = ctx.needs_input_grad[0]  # False for the first layer: images need no gradient
        grad_rows = torch.zeros_like(rows) if need_rows else None
        grad_weights = weights.new_empty(weights.shape)
        grad_w = torch.zeros(w_mat.shape, dtype=w_mat.dtype, device=w_mat.device)
        for s, e in _pixel_chunks(grad_out.shape[0], k * c):
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
            if need_rows:
                grad_rows.index_add_(0, idx.reshape(-1), (w.unsqueeze(2) * grad_cols).view(-1, cr))
        grad_mask = None
        if mask is not None:
            grad_mask = (grad_weights * raw).sum(1).view(mask.shape)
            grad_weights *= mask.reshape(-1, 1)
        # Corners in the padding read zero, so their grad_weights are zero already.
        g00, g01, g10, g11 = grad_weights.unbind(1)
        grad_py = (((g10 - g00) * (1 - lx) + (g11 - g01) * lx) * moving).view(py.shape)
        grad_px = (((g01 - g00) * (1 - ly) + (g11 - g10) * ly) * moving).view(px.shape)
        return grad_rows, grad_py, grad_px, grad_mask, grad_w, None, None, None


def deform_conv2d_gather(input, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None):
    """Same signature and result as torchvision.ops.deform_conv2d, for arguments deform_conv2d has checked."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, w = input.shape
    out_ch, c_per_group, kh, kw = weight.shape
    groups = c // c_per_group
    k = kh * kw
    offset_groups = offset.shape[1] // (2 * k)
    ho, wo = offset.shape[2], offset.shape[3]
    dev, dt = input.device, input.dtype

    # Sampling points, laid out [N, Ho, Wo, K, G] so that the gathered columns come out as [N*Ho*Wo, K*C].
    off = offset.view(n, offset_groups, k, 2, ho, wo).permute(0, 4, 5, 2, 1, 3)
    base_y = (torch.arange(ho, device=dev) * sh - ph).view(ho, 1, 1, 1) + (torch.arange(kh, device=dev) * dh).repeat_interleave(kw).view(1, 1, k, 1)
    base_x = (torch.arange(wo, device=dev) * sw - pw).view(1, wo, 1, 1) + (torch.arange(kw, device=dev) * dw).repeat(kh).view(1, 1, k, 1)
    py = base_y.to(dt) + off[..., 0]
    px = base_x.to(dt) + off[..., 1]
    if mask is not None:
        mask = mask.view(n, offset_groups, k, ho, wo).permute(0, 3, 4, 2, 1)
    rows = _padded_rows(input, offset_groups)
    w_mat = weight.permute(0, 2, 3, 1).reshape(out_ch, k, c_per_group).contiguous()  # matches the column layout [K, C]
    out = SampledConv.apply(rows, py, px, mask, w_mat, groups, h, w)
    if bias is not None:
        out = out + bias
    # Back to contiguous NCHW: BatchNorm's backward on the channels-last view was measured 4x slower.
    return out.view(n, ho, wo, out_ch).permute(0, 3, 1, 2).contiguous()
