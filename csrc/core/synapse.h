// Synaptic input of one presynaptic element: the contribution of input
// element j, changed by `delta`, to every neuron it connects to. The CPU and
// CUDA backends both build a layer's input current I and missing impulse M
// from these scatters (of W and of |W|), so the connectivity rules of Dense,
// Conv2D (strides, padding, dilation), DepthwiseConv2D (depth multiplier)
// and AveragePooling2D live here once.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"
#include "network.h"

namespace ttfs {

// First and last tap k (of `kernel` taps, spacing `dilation`) for which
// y = base - k*dilation lies in [0, (out-1)*stride]; empty if first > last.
TTFS_HD void tap_range(int base, int kernel, int dilation, int stride, int out, int& first, int& last) {
  const int low = base - (out - 1) * stride;  // k*dilation >= low
  first = low <= 0 ? 0 : (low + dilation - 1) / dilation;
  last = base < 0 ? -1 : base / dilation;
  if (last > kernel - 1) last = kernel - 1;
}

// Calls visit(out_position, tap) for every output position (oy*out_w+ox) whose
// window covers input cell (iy, ix); tap = ky*kernel_w+kx. The tap ranges are
// computed, not searched, so only strides > 1 need a divisibility test.
template <typename Visit>
TTFS_HD void for_each_window(const Geometry& g, int iy, int ix, Visit&& visit) {
  int ky0, ky1, kx0, kx1;
  tap_range(iy + g.pad_top, g.kernel_h, g.dilation_h, g.stride_h, g.out_h, ky0, ky1);
  tap_range(ix + g.pad_left, g.kernel_w, g.dilation_w, g.stride_w, g.out_w, kx0, kx1);
  for (int ky = ky0; ky <= ky1; ++ky) {
    const int y = iy + g.pad_top - ky * g.dilation_h;
    if (g.stride_h != 1 && y % g.stride_h) continue;
    const int oy = g.stride_h == 1 ? y : y / g.stride_h;
    for (int kx = kx0; kx <= kx1; ++kx) {
      const int x = ix + g.pad_left - kx * g.dilation_w;
      if (g.stride_w != 1 && x % g.stride_w) continue;
      const int ox = g.stride_w == 1 ? x : x / g.stride_w;
      visit(oy * g.out_w + ox, ky * g.kernel_w + kx);
    }
  }
}

// acc[i] += w[j -> i] * delta for every neuron i connected to input j.
// `w` is the kernel in Keras layout (or |kernel|); unused for pooling.
template <typename Acc>
TTFS_HD void scatter_input(NodeKind kind, const Geometry& g, const float* w, int64_t j,
                           float delta, Acc* acc) {
  const int c = int(j % g.in_c);
  const int64_t cell = j / g.in_c;
  if (kind == NodeKind::Dense) {
    const int units = g.multiplier;
    const float* row = w + int64_t(c) * units;
    Acc* out = acc + cell * units;
    for (int u = 0; u < units; ++u) out[u] += Acc(row[u]) * Acc(delta);
    return;
  }
  const int iy = int(cell / g.in_w), ix = int(cell % g.in_w);
  if (kind == NodeKind::Conv2D) {
    const int filters = g.multiplier;
    for_each_window(g, iy, ix, [&](int64_t pos, int tap) {
      const float* wk = w + (int64_t(tap) * g.in_c + c) * filters;
      Acc* out = acc + pos * filters;
      for (int f = 0; f < filters; ++f) out[f] += Acc(wk[f]) * Acc(delta);
    });
  } else if (kind == NodeKind::DepthwiseConv2D) {
    const int mult = g.multiplier;
    for_each_window(g, iy, ix, [&](int64_t pos, int tap) {
      const float* wk = w + (int64_t(tap) * g.in_c + c) * mult;
      Acc* out = acc + pos * g.out_c + int64_t(c) * mult;
      for (int m = 0; m < mult; ++m) out[m] += Acc(wk[m]) * Acc(delta);
    });
  } else if (kind == NodeKind::AveragePooling2D) {
    for_each_window(g, iy, ix, [&](int64_t pos, int) { acc[pos * g.out_c + c] += Acc(delta); });
  }
}

// MaxPooling2D's window at output (oy, ox, channel c): the maximum of the
// signal and of the prospective map over the input cells it covers (padded
// cells do not count). G is Geometry or any struct with its fields.
template <typename G>
TTFS_HD void max_pool_window(const G& g, const float* signal, const float* prospective, int oy, int ox,
                             int c, float& m, float& mp) {
  m = mp = -INFINITY;
  for (int ky = 0; ky < g.kernel_h; ++ky) {
    const int iy = oy * g.stride_h - g.pad_top + ky;
    if (iy < 0 || iy >= g.in_h) continue;
    for (int kx = 0; kx < g.kernel_w; ++kx) {
      const int ix = ox * g.stride_w - g.pad_left + kx;
      if (ix < 0 || ix >= g.in_w) continue;
      const int64_t j = (int64_t(iy) * g.in_w + ix) * g.in_c + c;
      m = m < signal[j] ? signal[j] : m;
      mp = mp < prospective[j] ? prospective[j] : mp;
    }
  }
}

}  // namespace ttfs
