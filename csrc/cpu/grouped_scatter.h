// The grouped scatter of the CPU engine's kernels (cpu_kernels.cpp): this
// step's changes of one input cell scattered together, their blocks of sums
// held in registers. Included by cpu_kernels.cpp only, inside its kernels.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu_kernels.h"

namespace ttfs {
namespace cpu {

// This step's changes of the channels of one input cell reach the same runs
// of sums (the same output positions), each with its own weights. The
// grouped scatter walks a run once for a group of such events: it loads a
// block of sums into registers, adds every event's term in event order, and
// stores the block once, so that the sums' memory traffic is divided by the
// group's size while every sum still receives the same terms in the same
// order as from scatter_change (results are identical). A group is up to
// kGroupMax consecutive events of one cell; a cell with more events forms
// several groups, one after another. A term is one converting load and one
// fused multiply-add, which equals the multiply and the add of
// add_weight_run: the product of two floats is exact in double.
constexpr int kGroupMax = 64;

// The instruction set a kernel set is compiled for.
enum class Isa { Generic, Avx2, Avx512 };

// One event of a group with the offset of its weights for the run at hand
// (Acc: the running sums' type).
template <typename Acc>
struct GroupTerm {
  int64_t k;
  Acc a, p;
  bool signal, prospective;
};

#if defined(__GNUC__) && defined(__x86_64__)
#define TTFS_GROUPED_X86 1
// cur[u] += w[k_e + u] * a_e and miss[u] += |w[k_e + u]| * p_e for every
// event e of the group in turn (only the sums an event's flags select), in
// blocks of sums held in registers (float64 sums: AVX-512 64, then 8; AVX2
// with FMA 16; float32 sums, multiply then add as add_weight_run rounds them:
// AVX-512 128, then 16; AVX2 32), from u on; u is left after the last whole
// block (grouped_scatter.cpp).
void add_group_blocks_avx512(double* cur, double* miss, const float* w, const GroupTerm<double>* terms, int count,
                             int64_t& u, int64_t n, bool any_signal, bool any_prospective);
void add_group_blocks_avx2(double* cur, double* miss, const float* w, const GroupTerm<double>* terms, int count,
                           int64_t& u, int64_t n, bool any_signal, bool any_prospective);
void add_group_blocks_avx512(float* cur, float* miss, const float* w, const GroupTerm<float>* terms, int count,
                             int64_t& u, int64_t n, bool any_signal, bool any_prospective);
void add_group_blocks_avx2(float* cur, float* miss, const float* w, const GroupTerm<float>* terms, int count,
                           int64_t& u, int64_t n, bool any_signal, bool any_prospective);
bool cpu_has_fma();
#endif

// Whether the kernel set of instruction set I scatters a layer with runs of
// `run` sums (a kernel row of filters, or a Dense layer's units) in groups:
// where it has the block kernel and a run fills its blocks a few times;
// shorter runs take the events one by one.
template <Isa I, typename Acc>
TTFS_KERNEL bool grouped_scatter_pays(int64_t run) {
#ifdef TTFS_GROUPED_X86
  const bool f64 = std::is_same<Acc, double>::value;
  if (I == Isa::Avx512) return run >= (f64 ? 128 : 256);
  if (I == Isa::Avx2) return run >= 64 && (!f64 || cpu_has_fma());  // float64: fused multiply-add
#else
  (void)run;
#endif
  return false;
}

// The terms of a group over a run of n sums: the blocks in registers, the
// rest (the last sums of a run that fills no whole block) event by event.
template <Isa I, typename Acc>
TTFS_KERNEL void add_group_run(Acc* cur, Acc* miss, const float* w, const GroupTerm<Acc>* terms, int count,
                               int64_t n, bool any_signal, bool any_prospective) {
  int64_t u = 0;
#ifdef TTFS_GROUPED_X86
  if (I == Isa::Avx512) add_group_blocks_avx512(cur, miss, w, terms, count, u, n, any_signal, any_prospective);
  if (I == Isa::Avx2) add_group_blocks_avx2(cur, miss, w, terms, count, u, n, any_signal, any_prospective);
#else
  (void)any_signal;
  (void)any_prospective;
#endif
  if (u == n) return;
  for (int e = 0; e < count; ++e) {
    const GroupTerm<Acc>& t = terms[e];
    if (t.signal && t.prospective) add_weight_run<true, true>(cur + u, miss + u, w + t.k + u, n - u, t.a, t.p);
    else if (t.signal) add_weight_run<true, false>(cur + u, miss + u, w + t.k + u, n - u, t.a, t.p);
    else add_weight_run<false, true>(cur + u, miss + u, w + t.k + u, n - u, t.a, t.p);
  }
}

// Scatters a group of events of one input cell: a Dense layer's run of
// `units` sums at the cell, or a Conv2D's (row layout) runs, one per kernel
// row, as scatter_conv_rows walks them.
template <NodeKind Kind, Isa I, typename Acc, typename Range>
TTFS_KERNEL void scatter_group(const Geometry& g, const float* w, const InputEvent* group, int count, Acc* cur,
                               Acc* miss, const Range& range) {
  GroupTerm<Acc> terms[kGroupMax];
  bool any_signal = false, any_prospective = false;
  for (int e = 0; e < count; ++e) {
    terms[e] = GroupTerm<Acc>{0, Acc(group[e].da), Acc(group[e].dp), group[e].signal, group[e].prospective};
    any_signal |= group[e].signal;
    any_prospective |= group[e].prospective;
  }
  const ElementPosition at = element_position(g, group[0].j);
  const int64_t filters = g.multiplier;
  if (Kind == NodeKind::Dense) {
    int64_t offset = at.cell * filters, shift = 0, n = filters;
    if (!range.clip(offset, shift, n)) return;
    for (int e = 0; e < count; ++e) terms[e].k = int64_t(group[e].j - at.cell * g.in_c) * filters + shift;
    add_group_run<I>(cur + offset, miss + offset, w, terms, count, n, any_signal, any_prospective);
    return;
  }
  int ky0, ky1;
  tap_range(at.iy + g.pad_top, g.kernel_h, g.dilation_h, g.stride_h, g.out_h, ky0, ky1);
  const int x = at.ix + g.pad_left, r = x % g.stride_w, q = x / g.stride_w;
  const RowResidue res = conv_row_residue(g, r);
  const int m0 = q - (g.out_w - 1) > 0 ? q - (g.out_w - 1) : 0, m1 = q < res.count - 1 ? q : res.count - 1;
  if (m0 > m1) return;
  const int64_t n = (m1 - m0 + 1) * filters;
  const int ox = q - m1;
  const int position = res.first + res.count - 1 - m1;
  for (int ky = ky0; ky <= ky1; ++ky) {
    const int y = at.iy + g.pad_top - ky * g.dilation_h;
    if (g.stride_h != 1 && y % g.stride_h) continue;
    const int oy = g.stride_h == 1 ? y : y / g.stride_h;
    int64_t offset = (int64_t(oy) * g.out_w + ox) * filters, shift = 0, run = n;
    if (!range.clip(offset, shift, run)) continue;
    for (int e = 0; e < count; ++e) {
      const int64_t c = group[e].j - at.cell * g.in_c;
      terms[e].k = ((c * g.kernel_h + ky) * g.kernel_w + position) * filters + shift;
    }
    add_group_run<I>(cur + offset, miss + offset, w, terms, count, run, any_signal, any_prospective);
  }
}

// Input channels from which an AveragePooling2D or DepthwiseConv2D scatters
// in groups (fewer: the events one by one).
constexpr int kChannelGroupMin = 32;

// Scatters a group of events of one input cell into an AveragePooling2D's or
// a DepthwiseConv2D's sums: the windows that cover the cell are found once,
// then each event's channel is added in each window. A sum takes at most one
// term of a group (its channel's), so it still receives its terms in event order.
template <NodeKind Kind, typename Acc, typename Range>
TTFS_KERNEL void scatter_channel_group(const Geometry& g, const float* w, const InputEvent* group, int count,
                                       Acc* cur, Acc* miss, const Range& range) {
  const ElementPosition at = element_position(g, group[0].j);
  const int64_t first = at.cell * g.in_c;
  for_each_window(g, at.iy, at.ix, [&](int64_t pos, int tap) {
    for (int e = 0; e < count; ++e) {
      const InputEvent& ev = group[e];
      const int64_t c = ev.j - first;
      if (Kind == NodeKind::AveragePooling2D) {
        const int64_t o = pos * g.out_c + c;
        if (!range.contains(o)) continue;
        if (ev.signal) cur[o] += Acc(ev.da);
        if (ev.prospective) miss[o] += Acc(ev.dp);
      } else {
        const int mult = g.multiplier;
        int64_t offset = pos * g.out_c + c * mult, k = (int64_t(tap) * g.in_c + c) * mult, n = mult;
        if (!range.clip(offset, k, n)) continue;
        const Acc a = Acc(ev.da), p = Acc(ev.dp);
        if (ev.signal && ev.prospective) add_weight_run<true, true>(cur + offset, miss + offset, w + k, n, a, p);
        else if (ev.signal) add_weight_run<true, false>(cur + offset, miss + offset, w + k, n, a, p);
        else add_weight_run<false, true>(cur + offset, miss + offset, w + k, n, a, p);
      }
    }
  });
}

// The events in groups of consecutive events of one input cell (Dense and
// Conv2D where grouped_scatter_pays).
template <NodeKind Kind, Isa I, typename Source, typename Acc, typename Range>
TTFS_KERNEL void scatter_grouped(const Node& node, const float* w, Source& events, Acc* cur, Acc* miss,
                                 const Range& range) {
  const Geometry& g = node.geom;
  InputEvent group[kGroupMax];
  int count = 0;
  int64_t cell_begin = 0, cell_end = 0;  // the current cell's elements (none yet)
  auto flush = [&]() {
    if (Kind == NodeKind::AveragePooling2D || Kind == NodeKind::DepthwiseConv2D)
      scatter_channel_group<Kind>(g, w, group, count, cur, miss, range);
    else
      scatter_group<Kind, I>(g, w, group, count, cur, miss, range);
    count = 0;
  };
  InputEvent e;
  for (size_t n = 0; n < events.size(); ++n) {
    if (!events.get(n, e)) continue;
    if (e.j < cell_begin || e.j >= cell_end) {  // another cell (one division per cell, not per event)
      if (count > 0) flush();
      cell_begin = int64_t(uint32_t(e.j) / uint32_t(g.in_c)) * g.in_c;
      cell_end = cell_begin + g.in_c;
    } else if (count == kGroupMax) {
      flush();
    }
    group[count++] = e;
  }
  if (count > 0) flush();
}

}  // namespace cpu
}  // namespace ttfs
