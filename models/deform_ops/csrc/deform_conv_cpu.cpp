// The "cpp" backend of the deformable convolution (models/deform_ops/cpp.py): the same function as
// torchvision.ops.deform_conv2d, computed as im2col + GEMM with the bilinear sampling fused into the im2col.
//
// Why it is fast on a CPU: the input is read channels-last, so every sampled column is 4 contiguous
// channel vectors blended with 4 weights (vectorised, one pass); the columns of one block of output pixels
// (an image, at CIFAR sizes) are multiplied by the weights right away (BLAS through at::mm), so no column
// buffer of the whole batch (75 MB at the default size) is ever written or re-read. Backward recomputes each block's columns in the same pass that
// scatters the input gradient and forms the offset/mask gradients. Images are split across threads; an
// image's input gradient is touched by one thread only, so the scatter needs no atomics.
//
// Border rule (torchvision's): a bilinear corner outside the image reads zero, in values and gradients.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

namespace {

struct Geometry {
  int64_t n, c, h, w, out_ch, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw, offset_groups, groups;
  int64_t taps() const { return kh * kw; }
  int64_t cols_per_pixel() const { return c * kh * kw; }  // laid out [weight group][tap][channel in group]
  int64_t image_size() const { return h * w * c; }         // one image of the channels-last input
  int64_t points_per_image() const { return offset_groups * kh * kw * ho * wo; }  // = mask entries per image
  // Output pixels per block: a whole image up to 2^22 column entries (16 MB in float32 per thread; a CIFAR
  // image of the default network is 0.6 M). Measured: smaller blocks (64 K entries, L2-sized) made the
  // backward ~15% slower, because the weight-gradient GEMM then sums over too few pixels per call; and at
  // 256 channels 2^22 made the forward ~8% faster than 2^20 (455 -> 1820 pixels per GEMM).
  int64_t block_pixels() const {
    return std::max<int64_t>(16, std::min<int64_t>(ho * wo, (int64_t(1) << 22) / cols_per_pixel()));
  }
};

// A run of channels inside one offset group and one weight group: contiguous in the input and in the columns.
struct Segment {
  int64_t c0, c1, offset_group, col_start_tap0, channels_per_group;
  // Where channel c of tap k lands in a pixel's columns: at column_base(k) + c.
  int64_t column_base(int64_t k) const { return col_start_tap0 + k * channels_per_group - c0; }
};

std::vector<Segment> channel_segments(const Geometry& g) {
  const int64_t per_offset_group = g.c / g.offset_groups, per_group = g.c / g.groups;
  std::vector<Segment> segs;
  for (int64_t c0 = 0; c0 < g.c;) {
    const int64_t og = c0 / per_offset_group, wg = c0 / per_group;
    const int64_t c1 = std::min((og + 1) * per_offset_group, (wg + 1) * per_group);
    segs.push_back({c0, c1, og, wg * g.taps() * per_group + (c0 - wg * per_group), per_group});
    c0 = c1;
  }
  return segs;
}

// The bilinear corners of a sampling point: pointers to 4 channel vectors (a zero vector for a corner
// outside the image), their weights, and the point's fractional parts for the coordinate gradient.
template <typename T>
struct Corners {
  const T* value[4];
  int64_t pixel[4];  // y * W + x inside the image, or -1
  T weight[4], ly, lx;
};

template <typename T>
inline void find_corners(T y, T x, const Geometry& g, const T* image, const T* zeros, Corners<T>& cr) {
  // Beyond one pixel outside, every corner is outside; the guard also keeps floor() of huge or NaN
  // coordinates from overflowing the integer cast.
  if (!(y >= -1 && y <= g.h && x >= -1 && x <= g.w)) {
    for (int j = 0; j < 4; ++j) cr.value[j] = zeros, cr.pixel[j] = -1, cr.weight[j] = 0;
    cr.ly = cr.lx = 0;
    return;
  }
  const int64_t y0 = static_cast<int64_t>(std::floor(y)), x0 = static_cast<int64_t>(std::floor(x));
  cr.ly = y - y0;
  cr.lx = x - x0;
  const T wy[2] = {1 - cr.ly, cr.ly}, wx[2] = {1 - cr.lx, cr.lx};
  for (int j = 0; j < 4; ++j) {
    const int64_t yy = y0 + j / 2, xx = x0 + j % 2;
    const bool inside = yy >= 0 && yy < g.h && xx >= 0 && xx < g.w;
    cr.pixel[j] = inside ? yy * g.w + xx : -1;
    cr.value[j] = inside ? image + cr.pixel[j] * g.c : zeros;
    cr.weight[j] = wy[j / 2] * wx[j % 2];
  }
}

// Runs of channels shorter than this take plain loops: a vector loop's set-up and horizontal sums cost more
// than a few scalar multiply-adds (the 3-channel first layer).
constexpr int64_t kNarrow = 8;

// out[c] = sum_j w_j * v_j[c] over channels [c0, c1): one sampled column run.
template <typename T>
inline void blend(T* __restrict out, const T* const v[4], T w0, T w1, T w2, T w3, int64_t c0, int64_t c1) {
  const T *__restrict v0 = v[0], *__restrict v1 = v[1], *__restrict v2 = v[2], *__restrict v3 = v[3];
  if (c1 - c0 < kNarrow) {
    for (int64_t c = c0; c < c1; ++c) out[c] = w0 * v0[c] + w1 * v1[c] + w2 * v2[c] + w3 * v3[c];
    return;
  }
#pragma omp simd
  for (int64_t c = c0; c < c1; ++c) out[c] = w0 * v0[c] + w1 * v1[c] + w2 * v2[c] + w3 * v3[c];
}

// dot[j] += v_j . g over channels [c0, c1).
template <typename T>
inline void corner_dots(const T* const v[4], const T* __restrict g, int64_t c0, int64_t c1, T dot[4]) {
  const T *__restrict v0 = v[0], *__restrict v1 = v[1], *__restrict v2 = v[2], *__restrict v3 = v[3];
  T d0 = 0, d1 = 0, d2 = 0, d3 = 0;
  if (c1 - c0 < kNarrow) {
    for (int64_t c = c0; c < c1; ++c) d0 += v0[c] * g[c], d1 += v1[c] * g[c], d2 += v2[c] * g[c], d3 += v3[c] * g[c];
  } else {
#pragma omp simd reduction(+ : d0, d1, d2, d3)
    for (int64_t c = c0; c < c1; ++c) d0 += v0[c] * g[c], d1 += v1[c] * g[c], d2 += v2[c] * g[c], d3 += v3[c] * g[c];
  }
  dot[0] += d0, dot[1] += d1, dot[2] += d2, dot[3] += d3;
}

// y[c] += a * x[c] over channels [c0, c1).
template <typename T>
inline void axpy(T* __restrict y, T a, const T* __restrict x, int64_t c0, int64_t c1) {
#pragma omp simd
  for (int64_t c = c0; c < c1; ++c) y[c] += a * x[c];
}

// Visits every (pixel, tap, offset group) of output pixels [p0, p1) of image n with its sampling point.
template <typename T, typename F>
inline void for_each_point(const Geometry& g, int64_t n, int64_t p0, int64_t p1, const T* offset, F&& visit) {
  const int64_t plane = g.ho * g.wo, k_all = g.taps();
  const T* off_n = offset + n * 2 * g.points_per_image();
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t oy = p / g.wo, ox = p % g.wo;
    for (int64_t k = 0; k < k_all; ++k) {
      const int64_t ky = k / g.kw, kx = k % g.kw;
      for (int64_t og = 0; og < g.offset_groups; ++og) {
        const int64_t ch = (og * k_all + k) * 2;  // torchvision's offset layout: (dy, dx) per group and tap
        const T y = static_cast<T>(oy * g.sh - g.ph + ky * g.dh) + off_n[ch * plane + p];
        const T x = static_cast<T>(ox * g.sw - g.pw + kx * g.dw) + off_n[(ch + 1) * plane + p];
        visit(p, k, og, y, x, (og * k_all + k) * plane + p);  // last: index of the mask value in image n
      }
    }
  }
}

// Columns of output pixels [p0, p1) of image n: cols[(p - p0) * cols_per_pixel + ...].
template <typename T>
void sample_block(const Geometry& g, const std::vector<Segment>& segs, int64_t n, int64_t p0, int64_t p1, const T* input,
                  const T* offset, const T* mask, const T* zeros, T* cols) {
  const int64_t row = g.cols_per_pixel();
  const T* image = input + n * g.image_size();
  const T* mask_n = mask ? mask + n * g.points_per_image() : nullptr;
  Corners<T> cr;
  for_each_point<T>(g, n, p0, p1, offset, [&](int64_t p, int64_t k, int64_t og, T y, T x, int64_t mask_at) {
    find_corners(y, x, g, image, zeros, cr);
    const T m = mask_n ? mask_n[mask_at] : T(1);
    const T w0 = cr.weight[0] * m, w1 = cr.weight[1] * m, w2 = cr.weight[2] * m, w3 = cr.weight[3] * m;
    for (const Segment& s : segs) {
      if (s.offset_group != og) continue;
      blend(cols + (p - p0) * row + s.column_base(k), cr.value, w0, w1, w2, w3, s.c0, s.c1);
    }
  });
}

Geometry geometry_of(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& weight, int64_t sh, int64_t sw,
                     int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  // The second line of defence behind models/deform_ops/arguments.py: the loops below divide by these sizes
  // and index raw pointers, so anything that would divide by zero or read outside a tensor is refused
  // first, before any arithmetic on the sizes.
  TORCH_CHECK(input.dim() == 4 && offset.dim() == 4 && weight.dim() == 4, "deform_conv_cpu: input, offset and weight must be 4-d");
  TORCH_CHECK(input.device().is_cpu() && offset.device().is_cpu() && weight.device().is_cpu(), "deform_conv_cpu: tensors must be on the CPU");
  TORCH_CHECK(offset.scalar_type() == input.scalar_type() && weight.scalar_type() == input.scalar_type(), "deform_conv_cpu: tensors must share one dtype");
  TORCH_CHECK(sh >= 1 && sw >= 1 && dh >= 1 && dw >= 1 && ph >= 0 && pw >= 0, "deform_conv_cpu: stride and dilation must be >= 1, padding >= 0");
  TORCH_CHECK(input.size(3) >= 1 && weight.size(1) >= 1 && weight.size(2) >= 1 && weight.size(3) >= 1,
              "deform_conv_cpu: the input channels and the kernel must not be empty");
  TORCH_CHECK(input.is_contiguous() && offset.is_contiguous() && weight.is_contiguous(), "deform_conv_cpu: tensors must be contiguous");
  Geometry g;
  g.n = input.size(0), g.h = input.size(1), g.w = input.size(2), g.c = input.size(3);
  g.out_ch = weight.size(0), g.kh = weight.size(2), g.kw = weight.size(3);
  g.ho = offset.size(2), g.wo = offset.size(3);
  g.sh = sh, g.sw = sw, g.ph = ph, g.pw = pw, g.dh = dh, g.dw = dw;
  g.groups = g.c / weight.size(1);
  g.offset_groups = offset.size(1) / (2 * g.taps());
  TORCH_CHECK(offset.size(0) == g.n, "deform_conv_cpu: offset and input batch sizes differ");
  TORCH_CHECK(g.groups >= 1 && g.c % weight.size(1) == 0 && g.out_ch % g.groups == 0, "deform_conv_cpu: weight groups do not divide the channels");
  TORCH_CHECK(g.offset_groups >= 1 && offset.size(1) == 2 * g.offset_groups * g.taps() && g.c % g.offset_groups == 0,
              "deform_conv_cpu: offset must have 2 * offset_groups * kh * kw channels, offset_groups dividing the input channels");
  TORCH_CHECK(g.ho >= 1 && g.wo >= 1 && g.ho == (g.h + 2 * ph - dh * (g.kh - 1) - 1) / sh + 1 && g.wo == (g.w + 2 * pw - dw * (g.kw - 1) - 1) / sw + 1,
              "deform_conv_cpu: offset height/width do not match the output size");
  return g;
}

void check_mask(const at::Tensor& mask, const at::Tensor& input, const Geometry& g) {
  TORCH_CHECK(!mask.defined() || (mask.is_contiguous() && mask.device().is_cpu() && mask.scalar_type() == input.scalar_type() &&
                                  mask.sizes() == at::IntArrayRef({g.n, g.offset_groups * g.taps(), g.ho, g.wo})),
              "deform_conv_cpu: mask must be a contiguous CPU tensor of the input's dtype, [N, offset_groups * kh * kw, Ho, Wo]");
}

// weight [O, C/groups, kh, kw] -> per weight group, [O/groups, kh*kw*C/groups] matching the column layout.
at::Tensor weight_matrix(const at::Tensor& weight, const Geometry& g) {
  return weight.permute({0, 2, 3, 1}).reshape({g.out_ch, g.taps() * (g.c / g.groups)}).contiguous();
}

}  // namespace

// input [N, H, W, C] (channels-last, contiguous), offset [N, 2*G*K, Ho, Wo], mask [N, G*K, Ho, Wo] or None,
// weight [O, C/groups, kh, kw], bias [O] or None (all contiguous, one dtype). Returns [N, O, Ho, Wo].
at::Tensor forward(const at::Tensor& input, const at::Tensor& offset, const c10::optional<at::Tensor>& mask_or_none,
                   const at::Tensor& weight, const c10::optional<at::Tensor>& bias_or_none, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  const at::Tensor mask = mask_or_none.value_or(at::Tensor()), bias = bias_or_none.value_or(at::Tensor());
  const Geometry g = geometry_of(input, offset, weight, sh, sw, ph, pw, dh, dw);
  check_mask(mask, input, g);
  TORCH_CHECK(!bias.defined() || (bias.numel() == g.out_ch && bias.device().is_cpu() && bias.scalar_type() == input.scalar_type()),
              "deform_conv_cpu: bias must have out_channels entries, on the CPU, of the input's dtype");
  const auto segs = channel_segments(g);
  const at::Tensor w_mat = weight_matrix(weight, g);
  at::Tensor out = at::empty({g.n, g.out_ch, g.ho * g.wo}, input.options());
  // With fewer images than threads, each image is cut into as many blocks as it needs for every thread to
  // get work (batch-1 inference would otherwise run on one core).
  const int64_t plane = g.ho * g.wo, per_image = (at::get_num_threads() + g.n - 1) / g.n;
  const int64_t block = std::max<int64_t>(1, std::min(g.block_pixels(), (plane + per_image - 1) / per_image));
  const int64_t blocks = (plane + block - 1) / block;
  const int64_t og_out = g.out_ch / g.groups, k_cpg = g.taps() * (g.c / g.groups);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "deform_conv_cpu_forward", [&] {
    const std::vector<scalar_t> zeros(g.c, 0);
    // Forward writes disjoint outputs, so (image, block) pairs are shared out freely.
    at::parallel_for(0, g.n * blocks, 1, [&](int64_t begin, int64_t end) {
      at::NoGradGuard no_grad;  // grad mode is per thread: worker threads must not record these ops either
      at::Tensor cols = at::empty({block, g.cols_per_pixel()}, input.options());
      for (int64_t i = begin; i < end; ++i) {
        const int64_t n = i / blocks, p0 = (i % blocks) * block, p1 = std::min(p0 + block, plane);
        sample_block<scalar_t>(g, segs, n, p0, p1, input.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(),
                               mask.defined() ? mask.data_ptr<scalar_t>() : nullptr, zeros.data(), cols.data_ptr<scalar_t>());
        const at::Tensor block_cols = cols.narrow(0, 0, p1 - p0);
        for (int64_t wg = 0; wg < g.groups; ++wg) {
          at::Tensor dst = out[n].narrow(0, wg * og_out, og_out).narrow(1, p0, p1 - p0);  // [O/groups, pixels]
          const at::Tensor w = w_mat.narrow(0, wg * og_out, og_out);
          const at::Tensor c = block_cols.narrow(1, wg * k_cpg, k_cpg).t();
          // BLAS writes straight into the strided [O/groups, pixels] block of the NCHW output: no copy.
          if (bias.defined())
            at::addmm_out(dst, bias.narrow(0, wg * og_out, og_out).unsqueeze(1), w, c);
          else
            at::mm_out(dst, w, c);
        }
      }
    });
  });
  return out.view({g.n, g.out_ch, g.ho, g.wo});
}

// Gradients w.r.t. input (channels-last; None when not needed), offset, mask (None without one) and weight.
std::vector<at::Tensor> backward(const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& offset,
                                 const c10::optional<at::Tensor>& mask_or_none, const at::Tensor& weight, int64_t sh, int64_t sw, int64_t ph,
                                 int64_t pw, int64_t dh, int64_t dw, bool need_input_grad) {
  const at::Tensor mask = mask_or_none.value_or(at::Tensor());
  const Geometry g = geometry_of(input, offset, weight, sh, sw, ph, pw, dh, dw);
  check_mask(mask, input, g);
  TORCH_CHECK(grad_out.numel() == g.n * g.out_ch * g.ho * g.wo && grad_out.device().is_cpu() && grad_out.scalar_type() == input.scalar_type(),
              "deform_conv_cpu: grad_out has the wrong size, device or dtype");
  const auto segs = channel_segments(g);
  const at::Tensor w_mat = weight_matrix(weight, g);
  const at::Tensor grad = grad_out.reshape({g.n, g.out_ch, g.ho * g.wo});
  at::Tensor grad_input = need_input_grad ? at::zeros_like(input) : at::Tensor();
  at::Tensor grad_offset = at::empty_like(offset);
  at::Tensor grad_mask = mask.defined() ? at::empty_like(mask) : at::Tensor();
  at::Tensor grad_w_mat = at::zeros_like(w_mat);
  std::vector<std::pair<int64_t, at::Tensor>> grad_w_parts;  // (first image, that thread's weight gradient)
  std::mutex grad_w_lock;
  const int64_t plane = g.ho * g.wo, block = g.block_pixels(), row = g.cols_per_pixel(), cpg = g.c / g.groups;
  const int64_t og_out = g.out_ch / g.groups, k_cpg = g.taps() * cpg;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "deform_conv_cpu_backward", [&] {
    const std::vector<scalar_t> zeros(g.c, 0);
    const scalar_t* mask_all = mask.defined() ? mask.data_ptr<scalar_t>() : nullptr;
    // One image per task: the scatter into an image's input gradient never races with another thread.
    at::parallel_for(0, g.n, 1, [&](int64_t begin, int64_t end) {
      at::NoGradGuard no_grad;
      at::Tensor cols = at::empty({block, row}, input.options());
      at::Tensor grad_cols = at::empty({block, row}, input.options());
      at::Tensor grad_w_local = at::zeros_like(w_mat);
      for (int64_t n = begin; n < end; ++n) {
        const scalar_t* image = input.data_ptr<scalar_t>() + n * g.image_size();
        scalar_t* grad_image = need_input_grad ? grad_input.data_ptr<scalar_t>() + n * g.image_size() : nullptr;
        scalar_t* g_off = grad_offset.data_ptr<scalar_t>() + n * 2 * g.points_per_image();
        scalar_t* g_mask = mask_all ? grad_mask.data_ptr<scalar_t>() + n * g.points_per_image() : nullptr;
        const scalar_t* mask_n = mask_all ? mask_all + n * g.points_per_image() : nullptr;
        for (int64_t p0 = 0; p0 < plane; p0 += block) {
          const int64_t p1 = std::min(p0 + block, plane), count = p1 - p0;
          // d loss / d columns = grad_out^T @ W, per weight group.
          for (int64_t wg = 0; wg < g.groups; ++wg) {
            const at::Tensor go = grad[n].narrow(0, wg * og_out, og_out).narrow(1, p0, count);
            at::Tensor dst = grad_cols.narrow(0, 0, count).narrow(1, wg * k_cpg, k_cpg);
            at::mm_out(dst, go.t(), w_mat.narrow(0, wg * og_out, og_out));
          }
          scalar_t* gc_all = grad_cols.data_ptr<scalar_t>();
          scalar_t* col_all = cols.data_ptr<scalar_t>();
          Corners<scalar_t> cr;
          for_each_point<scalar_t>(g, n, p0, p1, offset.data_ptr<scalar_t>(), [&](int64_t p, int64_t k, int64_t og, scalar_t y, scalar_t x, int64_t mask_at) {
            find_corners(y, x, g, image, zeros.data(), cr);
            const scalar_t m = mask_n ? mask_n[mask_at] : scalar_t(1);
            scalar_t wm[4], dot[4] = {0, 0, 0, 0};  // dot[j]: corner j's channel vector . d loss / d column
            for (int j = 0; j < 4; ++j) wm[j] = cr.weight[j] * m;
            for (const Segment& s : segs) {
              if (s.offset_group != og) continue;
              const int64_t at_col = (p - p0) * row + s.column_base(k);
              const scalar_t* gc = gc_all + at_col;
              blend(col_all + at_col, cr.value, wm[0], wm[1], wm[2], wm[3], s.c0, s.c1);
              corner_dots(cr.value, gc, s.c0, s.c1, dot);
              if (grad_image)
                for (int j = 0; j < 4; ++j)
                  if (cr.pixel[j] >= 0) axpy(grad_image + cr.pixel[j] * g.c, wm[j], gc, s.c0, s.c1);
            }
            // Corners 0..3 are (y0,x0), (y0,x1), (y1,x0), (y1,x1); dot[j] is 0 for a corner outside the image.
            const scalar_t ly = cr.ly, lx = cr.lx;
            const int64_t ch = (og * g.taps() + k) * 2;
            g_off[ch * plane + p] = m * ((1 - lx) * (dot[2] - dot[0]) + lx * (dot[3] - dot[1]));
            g_off[(ch + 1) * plane + p] = m * ((1 - ly) * (dot[1] - dot[0]) + ly * (dot[3] - dot[2]));
            if (g_mask) g_mask[mask_at] = cr.weight[0] * dot[0] + cr.weight[1] * dot[1] + cr.weight[2] * dot[2] + cr.weight[3] * dot[3];
          });
          // d loss / d W += grad_out @ columns, per weight group.
          for (int64_t wg = 0; wg < g.groups; ++wg) {
            const at::Tensor go = grad[n].narrow(0, wg * og_out, og_out).narrow(1, p0, count);
            grad_w_local.narrow(0, wg * og_out, og_out).addmm_(go, cols.narrow(0, 0, count).narrow(1, wg * k_cpg, k_cpg));
          }
        }
      }
      std::lock_guard<std::mutex> hold(grad_w_lock);
      grad_w_parts.emplace_back(begin, grad_w_local);
    });
  });
  // Summed in image order, not in the order the threads finished: the result is the same on every run.
  std::sort(grad_w_parts.begin(), grad_w_parts.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& part : grad_w_parts) grad_w_mat.add_(part.second);
  at::Tensor grad_weight = grad_w_mat.view({g.out_ch, g.kh, g.kw, cpg}).permute({0, 3, 1, 2}).contiguous();
  return {grad_input, grad_offset, grad_mask, grad_weight};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused deformable convolution, forward (CPU)");
  m.def("backward", &backward, "fused deformable convolution, backward (CPU)");
}
