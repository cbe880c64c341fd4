// Connectivity of the weighted and pooling layers: which neurons an input
// element reaches, with which weight. The CPU backend builds a layer's input
// current I and missing impulse M from scatters of the changes of its input
// (of W and of |W|); the CUDA backend's gather (cuda/synapse_gather.cuh)
// reads the same rules backwards. Dense, Conv2D (strides, padding,
// dilation), DepthwiseConv2D (depth multiplier) and AveragePooling2D are
// described here once.
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
  if (dilation == 1) {  // the usual case, without divisions
    first = low <= 0 ? 0 : low;
    last = base < 0 ? -1 : base;
  } else {
    first = low <= 0 ? 0 : (low + dilation - 1) / dilation;
    last = base < 0 ? -1 : base / dilation;
  }
  if (last > kernel - 1) last = kernel - 1;
}

// Calls visit(out_position, tap) for every output position (oy*out_w+ox) whose
// window covers input cell (iy, ix); tap = ky*kernel_w+kx. The tap ranges are
// computed, not searched, so only strides > 1 need a divisibility test.
template <typename Visit>
TTFS_HD void for_each_window(const Geometry& g, int iy, int ix, Visit&& visit) {
  if (g.kernel_h == g.stride_h && g.kernel_w == g.stride_w && g.dilation_h == 1 && g.dilation_w == 1) {
    // windows that tile the input (pooling): at most one covers the cell
    const int y = iy + g.pad_top, x = ix + g.pad_left;
    const int oy = y / g.stride_h, ox = x / g.stride_w;
    if (oy < g.out_h && ox < g.out_w)
      visit(oy * g.out_w + ox, (y - oy * g.stride_h) * g.kernel_w + (x - ox * g.stride_w));
    return;
  }
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

// Where input element j sits: channel c of cell (iy, ix) (cell = iy*in_w + ix).
// 32-bit divisions (validate_node keeps layers below 2^31 elements).
struct ElementPosition {
  int c, iy, ix;
  int64_t cell;
};
TTFS_HD ElementPosition element_position(const Geometry& g, int64_t j) {
  const uint32_t cell = uint32_t(j) / uint32_t(g.in_c);
  return ElementPosition{int(uint32_t(j) % uint32_t(g.in_c)), int(cell / uint32_t(g.in_w)),
                         int(cell % uint32_t(g.in_w)), int64_t(cell)};
}

// The outputs [lo, hi) of a layer that a scatter writes: all of them, or one
// thread's share when the threads split a layer (each then walks every
// change, so every sum still receives its terms in the same order).
struct OutputRange {
  int64_t lo, hi;
  // Clips the run of n outputs from `offset` (weights from `k`) to the range;
  // false if nothing is left.
  TTFS_HD bool clip(int64_t& offset, int64_t& k, int64_t& n) const {
    const int64_t from = offset > lo ? offset : lo, to = offset + n < hi ? offset + n : hi;
    if (from >= to) return false;
    k += from - offset;
    n = to - from;
    offset = from;
    return true;
  }
  TTFS_HD bool contains(int64_t i) const { return i >= lo && i < hi; }
};

// Every output: the usual case, without the clipping's tests.
struct AllOutputs {
  TTFS_HD bool clip(int64_t&, int64_t&, int64_t&) const { return true; }
  TTFS_HD bool contains(int64_t) const { return true; }
};

// One contiguous run of an input element's connections: cur[u] += w[u] * a
// and miss[u] += |w[u]| * p for u < n (only the sums that Signal /
// Prospective select). |w| is taken here (exact) rather than read from a
// second copy of the kernel: the scatter is bound by memory, and one copy
// of the weights stays in cache better than two.
template <bool Signal, bool Prospective, typename Acc>
TTFS_HD void add_weight_run(Acc* __restrict cur, Acc* __restrict miss, const float* __restrict w, int64_t n,
                            Acc a, Acc p) {
  for (int64_t u = 0; u < n; ++u) {
    if (Signal) cur[u] += Acc(w[u]) * a;
    if (Prospective) miss[u] += Acc(std::fabs(w[u])) * p;
  }
}

// Input element j changed its signal by `da` and its prospective map by `dp`:
// cur[i] += w[j -> i] * da and miss[i] += |w|[j -> i] * dp for every neuron i
// connected to j, in one walk over the connections. Signal / Prospective say
// which of the two changed (the other delta is ignored). `w` is the kernel in
// Keras layout; unused for pooling. Only the sums in `range` (OutputRange or
// AllOutputs) are written.
template <NodeKind kind, bool Signal, bool Prospective, typename Acc, typename Range>
TTFS_HD void scatter_change(const Geometry& g, const float* w, int64_t j, float da, float dp, Acc* cur,
                            Acc* miss, const Range& range) {
  const Acc a = Acc(da), p = Acc(dp);
  const ElementPosition e = element_position(g, j);
  // n outputs from `offset` on, weights from `k` on
  auto run = [&](int64_t offset, int64_t k, int64_t n) {
    if (range.clip(offset, k, n))
      add_weight_run<Signal, Prospective>(cur + offset, miss + offset, w + k, n, a, p);
  };
  if (kind == NodeKind::Dense) {
    run(e.cell * g.multiplier, int64_t(e.c) * g.multiplier, g.multiplier);
  } else if (kind == NodeKind::Conv2D) {
    const int filters = g.multiplier;
    for_each_window(g, e.iy, e.ix, [&](int64_t pos, int tap) {
      run(pos * filters, (int64_t(tap) * g.in_c + e.c) * filters, filters);
    });
  } else if (kind == NodeKind::DepthwiseConv2D) {
    const int mult = g.multiplier;
    for_each_window(g, e.iy, e.ix, [&](int64_t pos, int tap) {
      run(pos * g.out_c + int64_t(e.c) * mult, (int64_t(tap) * g.in_c + e.c) * mult, mult);
    });
  } else if (kind == NodeKind::AveragePooling2D) {
    for_each_window(g, e.iy, e.ix, [&](int64_t pos, int) {
      const int64_t o = pos * g.out_c + e.c;
      if (!range.contains(o)) return;
      if (Signal) cur[o] += a;
      if (Prospective) miss[o] += p;
    });
  }
}

// Conv2D with horizontal dilation 1 (any stride) has a faster scatter: for
// one kernel row, the outputs an input cell reaches are adjacent positions,
// reached through the taps kx of one residue modulo stride_w (every tap with
// stride 1), so the row's taps form one contiguous run of (taps x filters)
// sums. It needs the kernel in "row layout", where the taps of a kernel row
// are grouped by residue r = kx % stride_w (r = 0 first), each group in
// decreasing kx: rows[((c * kernel_h + ky) * kernel_w + conv_row_position(g, kx)) * filters + f]
// = kernel[ky][kx][c][f] (Keras layout), so the weights are contiguous too.
// (With stride 1 the position is kernel_w - 1 - kx.)
TTFS_HD bool conv_rows_apply(const Geometry& g) { return g.dilation_w == 1; }

// The taps of residue r of a kernel row: `count` of them, from position `first` of the row.
struct RowResidue {
  int count, first;
};
TTFS_HD RowResidue conv_row_residue(const Geometry& g, int r) {
  const int a = g.kernel_w / g.stride_w, b = g.kernel_w % g.stride_w;  // kernel_w = a * stride + b
  return RowResidue{a + (r < b ? 1 : 0), r * a + (r < b ? r : b)};
}

TTFS_HD int conv_row_position(const Geometry& g, int kx) {
  const RowResidue res = conv_row_residue(g, kx % g.stride_w);
  return res.first + res.count - 1 - kx / g.stride_w;
}

inline void conv_row_layout(const Geometry& g, const float* kernel, float* rows) {
  const int64_t filters = g.multiplier;
  for (int ky = 0; ky < g.kernel_h; ++ky)
    for (int kx = 0; kx < g.kernel_w; ++kx)
      for (int c = 0; c < g.in_c; ++c) {
        const float* from = kernel + ((int64_t(ky) * g.kernel_w + kx) * g.in_c + c) * filters;
        float* to = rows + ((int64_t(c) * g.kernel_h + ky) * g.kernel_w + conv_row_position(g, kx)) * filters;
        for (int64_t f = 0; f < filters; ++f) to[f] = from[f];
      }
}

// scatter_change for a Conv2D where conv_rows_apply(g), with the kernel
// `rows` in row layout. Every sum receives the same terms in the same order
// as with scatter_change (one term per input element), so the results are identical.
template <bool Signal, bool Prospective, typename Acc, typename Range>
TTFS_HD void scatter_conv_rows(const Geometry& g, const float* rows, int64_t j, float da, float dp, Acc* cur,
                               Acc* miss, const Range& range) {
  const ElementPosition e = element_position(g, j);
  int ky0, ky1;
  tap_range(e.iy + g.pad_top, g.kernel_h, g.dilation_h, g.stride_h, g.out_h, ky0, ky1);
  // tap kx = r + stride_w * m reaches output column ox = q - m
  const int x = e.ix + g.pad_left, r = x % g.stride_w, q = x / g.stride_w;
  const RowResidue res = conv_row_residue(g, r);
  const int m0 = q - (g.out_w - 1) > 0 ? q - (g.out_w - 1) : 0, m1 = q < res.count - 1 ? q : res.count - 1;
  if (m0 > m1) return;
  const int64_t filters = g.multiplier;
  const int64_t n = (m1 - m0 + 1) * filters;
  const int ox = q - m1;                             // leftmost output reached
  const int position = res.first + res.count - 1 - m1;  // its tap's position in the row layout
  for (int ky = ky0; ky <= ky1; ++ky) {
    const int y = e.iy + g.pad_top - ky * g.dilation_h;
    if (g.stride_h != 1 && y % g.stride_h) continue;
    const int oy = g.stride_h == 1 ? y : y / g.stride_h;
    int64_t offset = (int64_t(oy) * g.out_w + ox) * filters, run = n;
    int64_t k = ((int64_t(e.c) * g.kernel_h + ky) * g.kernel_w + position) * filters;
    if (range.clip(offset, k, run))
      add_weight_run<Signal, Prospective>(cur + offset, miss + offset, rows + k, run, Acc(da), Acc(dp));
  }
}

// MaxPooling2D's window at output (oy, ox, channel c): the maximum of the
// signal and of the prospective map over the input cells it covers (padded
// cells do not count), with signal_at(j) / prospective_at(j) the values of
// input element j.
template <typename Signal, typename Prospective>
TTFS_HD void max_pool_window_of(const Geometry& g, int oy, int ox, int c, Signal&& signal_at,
                                Prospective&& prospective_at, float& m, float& mp) {
  m = mp = -INFINITY;
  for (int ky = 0; ky < g.kernel_h; ++ky) {
    const int iy = oy * g.stride_h - g.pad_top + ky;
    if (iy < 0 || iy >= g.in_h) continue;
    for (int kx = 0; kx < g.kernel_w; ++kx) {
      const int ix = ox * g.stride_w - g.pad_left + kx;
      if (ix < 0 || ix >= g.in_w) continue;
      const int64_t j = (int64_t(iy) * g.in_w + ix) * g.in_c + c;
      const float a = signal_at(j), p = prospective_at(j);
      m = m < a ? a : m;
      mp = mp < p ? p : mp;
    }
  }
}

// The same over the signal and prospective arrays of the input.
TTFS_HD void max_pool_window(const Geometry& g, const float* signal, const float* prospective, int oy, int ox,
                             int c, float& m, float& mp) {
  max_pool_window_of(
      g, oy, ox, c, [&](int64_t j) { return signal[j]; }, [&](int64_t j) { return prospective[j]; }, m, mp);
}

}  // namespace ttfs
