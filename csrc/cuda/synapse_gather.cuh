// The fan-in view of csrc/core/synapse.h: where synapse.h scatters one input
// element to every neuron it reaches, these functions gather, for one
// neuron, the current I = L(a_in) (without bias) and the missing impulse
// M = L_abs(p_in) over the inputs that reach it. Same connectivity rules:
// input cell (iy, ix) reaches output position (oy, ox) through tap (ky, kx)
// exactly when iy = oy*stride_h - pad_top + ky*dilation_h (likewise for x),
// i.e. synapse.h's for_each_window read backwards.
//
// Sums are accumulated in double, like the CPU engine: a product of two
// float32 values is exact in double, so the only roundings are the
// additions (about 2^-29 of a float32 ulp each) and the final conversion to
// float32. The result is therefore the float32 rounding of the exact sum in
// all but vanishingly rare cases, independent of the summation order, which
// is what makes the CUDA and CPU backends agree bit for bit.
#pragma once

#include <cstdint>

#include "../core/network.h"
#include "../core/synapse.h"

namespace ttfs {
namespace cuda {

// Adds one input element: w*a to the current and |w|*p to the missing
// impulse. Zero inputs add nothing (as in the CPU engine, which scatters only
// changes), so the weight is not even loaded for them.
__device__ __forceinline__ void add_synapse(const float* __restrict__ weight, float a, float p,
                                            double& current, double& missing) {
  if (a == 0.0f && p == 0.0f) return;
  const float w = *weight;
  if (a != 0.0f) current = fma(double(w), double(a), current);  // exact product: fma == mul + add
  if (p != 0.0f) missing = fma(double(fabsf(w)), double(p), missing);
}

// Visits every (input cell offset, tap) of output position (oy, ox): the
// input cell's first element is (iy*in_w + ix)*in_c.
template <typename Visit>
__device__ __forceinline__ void for_each_tap(const Geometry& g, int oy, int ox, Visit&& visit) {
  for (int ky = 0; ky < g.kernel_h; ++ky) {
    const int iy = oy * g.stride_h - g.pad_top + ky * g.dilation_h;
    if (iy < 0 || iy >= g.in_h) continue;
    for (int kx = 0; kx < g.kernel_w; ++kx) {
      const int ix = ox * g.stride_w - g.pad_left + kx * g.dilation_w;
      if (ix < 0 || ix >= g.in_w) continue;
      visit((int64_t(iy) * g.in_w + ix) * g.in_c, ky * g.kernel_w + kx);
    }
  }
}

// The fan-in of neuron i (flattened channels-last) of a weighted or
// average-pooling layer, in increasing input index: visit(j, w) for input
// element j (offset in the inbound's row) with w its weight's index in the
// Keras-layout kernel (0 for pooling, whose weights are all 1). Dense and
// Conv2D read whole cells: cell_channels(cell_offset, each) calls each(c)
// for the channels c of that cell to visit, in increasing order. Depthwise
// and pooling read one channel per tap: input j is visited if one_channel(j).
template <NodeKind Kind, typename CellChannels, typename OneChannel, typename Visit>
__device__ __forceinline__ void for_each_input(const Geometry& g, int i, CellChannels&& cell_channels,
                                               OneChannel&& one_channel, Visit&& visit) {
  if constexpr (Kind == NodeKind::Dense) {
    // i = cell*units + u; input (cell, c) has weight kernel[c*units + u].
    const int units = g.multiplier;
    const int64_t cell = i / units;
    const int u = i - int(cell) * units;
    cell_channels(cell * g.in_c, [&](int c) { visit(cell * g.in_c + c, int64_t(c) * units + u); });
  } else if constexpr (Kind == NodeKind::Conv2D) {
    // i = pos*filters + f; input (cell, c) through tap has weight kernel[(tap*in_c + c)*filters + f].
    const int filters = g.multiplier;
    const int pos = i / filters, f = i - pos * filters;
    const int oy = pos / g.out_w, ox = pos - oy * g.out_w;
    for_each_tap(g, oy, ox, [&](int64_t cell, int tap) {
      cell_channels(cell, [&](int c) { visit(cell + c, (int64_t(tap) * g.in_c + c) * filters + f); });
    });
  } else if constexpr (Kind == NodeKind::DepthwiseConv2D) {
    // i = pos*out_c + c*mult + m; reads input channel c with weight kernel[(tap*in_c + c)*mult + m].
    const int mult = g.multiplier;
    const int pos = i / g.out_c, oc = i - pos * g.out_c;
    const int c = oc / mult, m = oc - c * mult;
    const int oy = pos / g.out_w, ox = pos - oy * g.out_w;
    for_each_tap(g, oy, ox, [&](int64_t cell, int tap) {
      if (one_channel(cell + c)) visit(cell + c, (int64_t(tap) * g.in_c + c) * mult + m);
    });
  } else if constexpr (Kind == NodeKind::AveragePooling2D) {
    // i = pos*out_c + c; sums channel c over the window (the division by the
    // cell count happens in float32 afterwards, as in the CPU engine).
    const int pos = i / g.out_c, c = i - pos * g.out_c;
    const int oy = pos / g.out_w, ox = pos - oy * g.out_w;
    for_each_tap(g, oy, ox, [&](int64_t cell, int) {
      if (one_channel(cell + c)) visit(cell + c, int64_t(0));
    });
  }
}

// A synapse's weight: the kernel's, or 1 for average pooling. (1 * x is
// exact, so pooling sums add the same values as the CPU engine.)
template <NodeKind Kind>
__device__ __forceinline__ const float* weight_at(const float* kernel, int64_t w) {
  static const float one = 1.0f;
  return Kind == NodeKind::AveragePooling2D ? &one : kernel + w;
}

// I (without bias, before the input gate) and M of neuron i over its whole
// fan-in. `kernel` is in Keras layout; unused for pooling.
template <NodeKind Kind>
__device__ __forceinline__ void gather_synaptic_input(const Geometry& g, const float* __restrict__ kernel,
                                                      int i, const float* signal,
                                                      const float* prospective, double& current,
                                                      double& missing) {
  for_each_input<Kind>(
      g, i,
      [&](int64_t, auto&& each) {
        for (int c = 0; c < g.in_c; ++c) each(c);
      },
      [](int64_t) { return true; },
      [&](int64_t j, int64_t w) {
        add_synapse(weight_at<Kind>(kernel, w), signal[j], prospective[j], current, missing);
      });
}

// The event-driven alternative to gather_synaptic_input: the changes of one
// step of the inputs a neuron reads. An input element changed at step t
// when stamp == t; its deltas are (signal - old_signal, prospective -
// old_prospective), added as w * da to the current and |w| * dp to the
// missing impulse, in increasing input index, which is the order in which
// the CPU engine scatters them into its running sums: the double sums, and
// so I and M, equal the CPU's bit for bit.
struct InputEvents {
  const float* signal;
  const float* prospective;
  const float* old_signal;
  const float* old_prospective;
  const int* stamp;
  const int* cell_count;  // Conv2D, Dense with in_c > kDirectChannels: changed channels
  const int* cell_list;   // per input cell, which ones ([cell][in_c]); else null
  int t;
};

// Up to this many channels a layer tests its inputs' stamps directly (one or
// two cache lines per cell) instead of reading per-cell lists.
constexpr int kDirectChannels = 32;

__device__ __forceinline__ void add_event(float w, const InputEvents& in, int64_t j, double& current,
                                          double& missing) {
  const float a = in.signal[j], a_old = in.old_signal[j];
  const float p = in.prospective[j], p_old = in.old_prospective[j];
  if (a != a_old) current += double(w) * double(a - a_old);  // exact product, one rounding
  if (p != p_old) missing += double(fabsf(w)) * double(p - p_old);
}

template <NodeKind Kind>
__device__ __forceinline__ void add_input_events(const Geometry& g, const float* __restrict__ kernel, int i,
                                                 const InputEvents& in, double& current, double& missing) {
  for_each_input<Kind>(
      g, i,
      [&](int64_t cell_offset, auto&& each) {  // a cell's changed channels
        if (in.cell_list) {
          const int* list = in.cell_list + cell_offset;
          for (int k = 0, n = in.cell_count[cell_offset / g.in_c]; k < n; ++k) each(list[k]);
        } else {
          for (int c = 0; c < g.in_c; ++c)
            if (in.stamp[cell_offset + c] == in.t) each(c);
        }
      },
      [&](int64_t j) { return in.stamp[j] == in.t; },
      [&](int64_t j, int64_t w) { add_event(*weight_at<Kind>(kernel, w), in, j, current, missing); });
}

}  // namespace cuda
}  // namespace ttfs
