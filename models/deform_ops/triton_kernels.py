"""The Triton kernels of the "triton" backend (triton_op.py registers them as an operator).

Implicit GEMM: a block of output positions (n, ho, wo) times a block of output channels, reduced over
(input channel, tap) in blocks. Each reduction block samples its columns bilinearly straight into registers (the
mask applied there) and multiplies them with the weight block: no column buffer is ever written to global memory.
Backward, per block of positions and columns: the column gradient (grad_out x weight, on chip), then the input
gradient scattered to the four corners of every sample (atomics: two taps can hit the same pixel), and the offset
and mask gradients (atomics: every channel of an offset group adds to the same one); the weight gradient is a
second implicit GEMM, grad_out^T x columns, with the columns sampled again, split over positions (atomics). Sampling follows torchvision's
bilinear_interpolate exactly: zero outside (-1, H) x (-1, W), each corner only where it lies in the image.

Layouts are torchvision's: input [N, C, H, W], weight [OC, C/G, KH, KW], offset [N, 2*OG*KH*KW, Ho, Wo] ((dy, dx) per
tap), mask [N, OG*KH*KW, Ho, Wo], all contiguous. Accumulation is in float32 (float64 for float64 inputs); float16
and bfloat16 inputs multiply in their own type on the tensor cores, with float32 accumulators and gradients.
"""
import triton
import triton.language as tl


@triton.jit
def _sizes(N, C, OC, Ho, Wo, G, KH, KW):
    """Positions, input and output channels per group, taps, and columns (input channels per group x taps)."""
    K = KH * KW
    return N * Ho * Wo, C // G, OC // G, K, (C // G) * K


@triton.jit
def _positions(rp, Ho, Wo):
    hw = Ho * Wo
    n = rp // hw
    rem = rp % hw
    return n, rem // Wo, rem % Wo


@triton.jit
def _sample(x_ptr, off_ptr, msk_ptr, n, ho, wo, vp, rr, vr, g, C, H, W, Ho, Wo, Cg, Cpog, OG, KW, K,
            SH, SW, PH, PW, DH, DW, HAS_MASK: tl.constexpr, ACC: tl.constexpr):
    """For a [positions, columns] block: the bilinear value of every sample, its mask, its two coordinate derivatives,
    and what the scatter of its gradient needs (corner offsets, their validity and weights)."""
    cl = rr // K
    k = rr % K
    c = g * Cg + cl
    og = c // Cpog
    ki = k // KW
    kj = k % KW
    valid = vp[:, None] & vr[None, :]
    ok = og * K + k  # offset group and tap: the (dy, dx) pair and mask channel
    hw = Ho * Wo
    pos = ho * Wo + wo
    off_base = (n[:, None] * (2 * OG * K) + 2 * ok[None, :]) * hw + pos[:, None]
    dy = tl.load(off_ptr + off_base, mask=valid, other=0.0).to(ACC)
    dx = tl.load(off_ptr + off_base + hw, mask=valid, other=0.0).to(ACC)
    y = (ho * SH - PH)[:, None].to(ACC) + (ki * DH)[None, :].to(ACC) + dy
    x = (wo * SW - PW)[:, None].to(ACC) + (kj * DW)[None, :].to(ACC) + dx
    # Far outside, clamp before the integer cast; such samples have no valid corner either way.
    y0f = tl.floor(tl.minimum(tl.maximum(y, -2.0), H + 1.0))
    x0f = tl.floor(tl.minimum(tl.maximum(x, -2.0), W + 1.0))
    ly = y - y0f
    lx = x - x0f
    hy = 1 - ly
    hx = 1 - lx
    y0 = y0f.to(tl.int32)
    x0 = x0f.to(tl.int32)
    # A corner counts where it lies in the image; no test on the sample itself. That is torchvision's rule for the
    # coordinate gradient (at y == -1 exactly the row-0 corners still give d/dy), and its value is the same as the
    # forward's "zero outside (-1, H) x (-1, W)": on that border the inner corners' weights are zero.
    ry0 = (y0 >= 0) & (y0 <= H - 1)
    ry1 = (y0 >= -1) & (y0 <= H - 2)
    rx0 = (x0 >= 0) & (x0 <= W - 1)
    rx1 = (x0 >= -1) & (x0 <= W - 2)
    m1 = valid & ry0 & rx0
    m2 = valid & ry0 & rx1
    m3 = valid & ry1 & rx0
    m4 = valid & ry1 & rx1
    base = (n[:, None] * C + c[None, :]) * H * W + y0 * W + x0
    v1 = tl.load(x_ptr + base, mask=m1, other=0.0).to(ACC)
    v2 = tl.load(x_ptr + base + 1, mask=m2, other=0.0).to(ACC)
    v3 = tl.load(x_ptr + base + W, mask=m3, other=0.0).to(ACC)
    v4 = tl.load(x_ptr + base + W + 1, mask=m4, other=0.0).to(ACC)
    val = hy * hx * v1 + hy * lx * v2 + ly * hx * v3 + ly * lx * v4
    d_y = hx * (v3 - v1) + lx * (v4 - v2)
    d_x = hy * (v2 - v1) + ly * (v4 - v3)
    if HAS_MASK:
        m = tl.load(msk_ptr + (n[:, None] * (OG * K) + ok[None, :]) * hw + pos[:, None], mask=valid, other=0.0).to(ACC)
    else:
        m = tl.where(valid, 1.0, 0.0).to(ACC)
    return val, m, d_y, d_x, base, m1, m2, m3, m4, hy, hx, ly, lx, off_base, ok, valid


@triton.jit
def forward_kernel(x_ptr, off_ptr, msk_ptr, w_ptr, b_ptr, out_ptr, N, C, H, W, OC, Ho, Wo, G, OG, KH, KW,
                   SH, SW, PH, PW, DH, DW, HAS_MASK: tl.constexpr, HAS_BIAS: tl.constexpr, ACC: tl.constexpr, DOT: tl.constexpr,
                   BP: tl.constexpr, BO: tl.constexpr, BR: tl.constexpr):
    pid_p = tl.program_id(0)
    pid_o = tl.program_id(1)
    g = tl.program_id(2)
    P, Cg, Og, K, R = _sizes(N, C, OC, Ho, Wo, G, KH, KW)
    rp = pid_p * BP + tl.arange(0, BP)
    vp = rp < P
    n, ho, wo = _positions(rp, Ho, Wo)
    ro = pid_o * BO + tl.arange(0, BO)
    vo = ro < Og
    acc = tl.zeros((BP, BO), dtype=ACC)
    for r0 in range(0, R, BR):
        rr = r0 + tl.arange(0, BR)
        vr = rr < R
        val, m, _, _, _, _, _, _, _, _, _, _, _, _, _, _ = _sample(
            x_ptr, off_ptr, msk_ptr, n, ho, wo, vp, rr, vr, g, C, H, W, Ho, Wo, Cg, C // OG, OG, KW, K,
            SH, SW, PH, PW, DH, DW, HAS_MASK, ACC)
        col = (val * m).to(DOT)
        wt = tl.load(w_ptr + (g * Og + ro)[None, :] * R + rr[:, None], mask=vr[:, None] & vo[None, :], other=0.0).to(DOT)
        acc += tl.dot(col, wt, input_precision="ieee", out_dtype=ACC)
    if HAS_BIAS:
        acc += tl.load(b_ptr + g * Og + ro, mask=vo, other=0.0).to(ACC)[None, :]
    out = out_ptr + (n[:, None] * OC + (g * Og + ro)[None, :]) * (Ho * Wo) + (ho * Wo + wo)[:, None]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=vp[:, None] & vo[None, :])


@triton.jit
def backward_columns_kernel(go_ptr, x_ptr, off_ptr, msk_ptr, w_ptr, gx_ptr, goff_ptr, gmsk_ptr, N, C, H, W, OC, Ho, Wo, G, OG, KH, KW,
                            SH, SW, PH, PW, DH, DW, HAS_MASK: tl.constexpr, NEED_INPUT: tl.constexpr, ACC: tl.constexpr,
                            DOT: tl.constexpr, BP: tl.constexpr, BO: tl.constexpr, BR: tl.constexpr):
    """Input, offset and mask gradients of a [positions, columns] block (the gradient buffers are ACC-typed)."""
    pid_p = tl.program_id(0)
    pid_r = tl.program_id(1)
    g = tl.program_id(2)
    P, Cg, Og, K, R = _sizes(N, C, OC, Ho, Wo, G, KH, KW)
    rp = pid_p * BP + tl.arange(0, BP)
    vp = rp < P
    n, ho, wo = _positions(rp, Ho, Wo)
    rr = pid_r * BR + tl.arange(0, BR)
    vr = rr < R
    gcol = tl.zeros((BP, BR), dtype=ACC)
    for o0 in range(0, Og, BO):
        ro = o0 + tl.arange(0, BO)
        vo = ro < Og
        go = tl.load(go_ptr + (n[:, None] * OC + (g * Og + ro)[None, :]) * (Ho * Wo) + (ho * Wo + wo)[:, None],
                     mask=vp[:, None] & vo[None, :], other=0.0).to(DOT)
        wt = tl.load(w_ptr + (g * Og + ro)[:, None] * R + rr[None, :], mask=vo[:, None] & vr[None, :], other=0.0).to(DOT)
        gcol += tl.dot(go, wt, input_precision="ieee", out_dtype=ACC)
    val, m, d_y, d_x, base, m1, m2, m3, m4, hy, hx, ly, lx, off_base, ok, valid = _sample(
        x_ptr, off_ptr, msk_ptr, n, ho, wo, vp, rr, vr, g, C, H, W, Ho, Wo, Cg, C // OG, OG, KW, K,
        SH, SW, PH, PW, DH, DW, HAS_MASK, ACC)
    gv = gcol * m  # the gradient reaching the bilinear value
    if NEED_INPUT:
        tl.atomic_add(gx_ptr + base, gv * hy * hx, mask=m1)
        tl.atomic_add(gx_ptr + base + 1, gv * hy * lx, mask=m2)
        tl.atomic_add(gx_ptr + base + W, gv * ly * hx, mask=m3)
        tl.atomic_add(gx_ptr + base + W + 1, gv * ly * lx, mask=m4)
    tl.atomic_add(goff_ptr + off_base, gv * d_y, mask=valid)
    tl.atomic_add(goff_ptr + off_base + Ho * Wo, gv * d_x, mask=valid)
    if HAS_MASK:
        tl.atomic_add(gmsk_ptr + (n[:, None] * (OG * K) + ok[None, :]) * (Ho * Wo) + (ho * Wo + wo)[:, None], gcol * val, mask=valid)


@triton.jit
def backward_weight_kernel(go_ptr, x_ptr, off_ptr, msk_ptr, gw_ptr, N, C, H, W, OC, Ho, Wo, G, OG, KH, KW,
                           SH, SW, PH, PW, DH, DW, HAS_MASK: tl.constexpr, ACC: tl.constexpr, DOT: tl.constexpr,
                           BP: tl.constexpr, BO: tl.constexpr, BR: tl.constexpr, SPAN: tl.constexpr):
    """grad weight [OC, C/G * K] = grad_out^T x columns, the columns sampled again block by block. A program sums
    SPAN positions (split-K: a weight block alone would leave most of a GPU idle over a long loop) and adds its
    share to gw with atomics (gw starts at zero)."""
    pid_or = tl.program_id(0)
    pid_s = tl.program_id(1)
    g = tl.program_id(2)
    P, Cg, Og, K, R = _sizes(N, C, OC, Ho, Wo, G, KH, KW)
    r_blocks = tl.cdiv(R, BR)
    pid_o = pid_or // r_blocks
    pid_r = pid_or % r_blocks
    ro = pid_o * BO + tl.arange(0, BO)
    vo = ro < Og
    rr = pid_r * BR + tl.arange(0, BR)
    vr = rr < R
    acc = tl.zeros((BO, BR), dtype=ACC)
    for p0 in range(pid_s * SPAN, tl.minimum(P, (pid_s + 1) * SPAN), BP):
        rp = p0 + tl.arange(0, BP)
        vp = rp < P
        n, ho, wo = _positions(rp, Ho, Wo)
        val, m, _, _, _, _, _, _, _, _, _, _, _, _, _, _ = _sample(
            x_ptr, off_ptr, msk_ptr, n, ho, wo, vp, rr, vr, g, C, H, W, Ho, Wo, Cg, C // OG, OG, KW, K,
            SH, SW, PH, PW, DH, DW, HAS_MASK, ACC)
        col = (val * m).to(DOT)
        go = tl.load(go_ptr + (n[None, :] * OC + (g * Og + ro)[:, None]) * (Ho * Wo) + (ho * Wo + wo)[None, :],
                     mask=vo[:, None] & vp[None, :], other=0.0).to(DOT)
        acc += tl.dot(go, col, input_precision="ieee", out_dtype=ACC)
    tl.atomic_add(gw_ptr + (g * Og + ro)[:, None] * R + rr[None, :], acc, mask=vo[:, None] & vr[None, :])
