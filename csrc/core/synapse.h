// Synaptic input of one presynaptic element: the contribution of input
// element j, changed by `delta`, to every neuron it connects to. The CPU and
// CUDA backends both build a layer's input current I and missing impulse M
// from these scatters (of W and of |W|), so the connectivity rules of Dense,
// Conv2D (strides, padding, dilation), DepthwiseConv2D (depth multiplier)
// and AveragePooling2D live here once.
#pragma once

#include <cstdint>

#include "common.h"
#include "network.h"

namespace ttfs {

// Calls visit(out_position, tap) for every output position (oy*out_w+ox) whose
// window covers input cell (iy, ix); tap = ky*kernel_w+kx.
template <typename Visit>
TTFS_HD void for_each_window(const Geometry& g, int iy, int ix, Visit&& visit) {
  for (int ky = 0; ky < g.kernel_h; ++ky) {
    const int y = iy + g.pad_top - ky * g.dilation_h;
    if (y < 0) break;  // y only decreases with ky
    if (g.stride_h != 1 && y % g.stride_h) continue;
    const int oy = g.stride_h == 1 ? y : y / g.stride_h;
    if (oy >= g.out_h) continue;
    for (int kx = 0; kx < g.kernel_w; ++kx) {
      const int x = ix + g.pad_left - kx * g.dilation_w;
      if (x < 0) break;  // x only decreases with kx
      if (g.stride_w != 1 && x % g.stride_w) continue;
      const int ox = g.stride_w == 1 ? x : x / g.stride_w;
      if (ox >= g.out_w) continue;
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

}  // namespace ttfs
