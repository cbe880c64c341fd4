// The block kernels of the grouped scatter (grouped_scatter.h), in AVX-512
// and in AVX2 with FMA; chosen where the CPU has them. A term is one
// converting load and one fused multiply-add, which equals the multiply and
// the add of add_weight_run (synapse.h): the product of two floats is exact
// in double, so the fused and the separate operations round alike.
#include "grouped_scatter.h"

#ifdef TTFS_GROUPED_X86
#include <immintrin.h>

#define TTFS_AVX512 "avx2,fma,avx512f,avx512vl,avx512dq,avx512bw,prefer-vector-width=512"

namespace ttfs {
namespace cpu {

// cur[u] += w[k_e + u] * a_e and miss[u] += |w[k_e + u]| * p_e for every
// event e of the group in turn (only the sums an event's flags select), in
// blocks of 64 sums held in registers, then 8; from u on, u left after the last block.
__attribute__((target(TTFS_AVX512))) void add_group_blocks_avx512(double* __restrict cur, double* __restrict miss,
                                                                  const float* __restrict w, const GroupTerm* terms,
                                                                  int count, int64_t& u_io, int64_t n,
                                                                  bool any_signal, bool any_prospective) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  int64_t u = u_io;
  for (; u + 64 <= n; u += 64) {
    __m512d c[8], m[8];
    for (int r = 0; r < 8; ++r) {
      c[r] = any_signal ? _mm512_loadu_pd(cur + u + 8 * r) : _mm512_setzero_pd();
      m[r] = any_prospective ? _mm512_loadu_pd(miss + u + 8 * r) : _mm512_setzero_pd();
    }
    for (int e = 0; e < count; ++e) {
      const GroupTerm& t = terms[e];
      const float* we = w + t.k + u;
      if (t.signal) {
        const __m512d a = _mm512_set1_pd(t.a);
        for (int r = 0; r < 8; ++r) c[r] = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(we + 8 * r)), a, c[r]);
      }
      if (t.prospective) {
        const __m512d p = _mm512_set1_pd(t.p);
        for (int r = 0; r < 8; ++r)
          m[r] = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_and_ps(_mm256_loadu_ps(we + 8 * r), magnitude)), p, m[r]);
      }
    }
    for (int r = 0; r < 8; ++r) {
      if (any_signal) _mm512_storeu_pd(cur + u + 8 * r, c[r]);
      if (any_prospective) _mm512_storeu_pd(miss + u + 8 * r, m[r]);
    }
  }
  for (; u + 8 <= n; u += 8) {
    __m512d c = any_signal ? _mm512_loadu_pd(cur + u) : _mm512_setzero_pd();
    __m512d m = any_prospective ? _mm512_loadu_pd(miss + u) : _mm512_setzero_pd();
    for (int e = 0; e < count; ++e) {
      const GroupTerm& t = terms[e];
      const __m256 wv = _mm256_loadu_ps(w + t.k + u);
      if (t.signal) c = _mm512_fmadd_pd(_mm512_cvtps_pd(wv), _mm512_set1_pd(t.a), c);
      if (t.prospective) m = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_and_ps(wv, magnitude)), _mm512_set1_pd(t.p), m);
    }
    if (any_signal) _mm512_storeu_pd(cur + u, c);
    if (any_prospective) _mm512_storeu_pd(miss + u, m);
  }
  u_io = u;
}

// The same for AVX2 with FMA, 16 sums at a time.
__attribute__((target("avx2,fma"))) void add_group_blocks_avx2_fma(double* __restrict cur, double* __restrict miss,
                                                                  const float* __restrict w, const GroupTerm* terms,
                                                                  int count, int64_t& u_io, int64_t n,
                                                                  bool any_signal, bool any_prospective) {
  const __m128 magnitude = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
  int64_t u = u_io;
  for (; u + 16 <= n; u += 16) {
    __m256d c[4], m[4];
    for (int r = 0; r < 4; ++r) {
      c[r] = any_signal ? _mm256_loadu_pd(cur + u + 4 * r) : _mm256_setzero_pd();
      m[r] = any_prospective ? _mm256_loadu_pd(miss + u + 4 * r) : _mm256_setzero_pd();
    }
    for (int e = 0; e < count; ++e) {
      const GroupTerm& t = terms[e];
      const float* we = w + t.k + u;
      if (t.signal) {
        const __m256d a = _mm256_set1_pd(t.a);
        for (int r = 0; r < 4; ++r) c[r] = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(we + 4 * r)), a, c[r]);
      }
      if (t.prospective) {
        const __m256d p = _mm256_set1_pd(t.p);
        for (int r = 0; r < 4; ++r)
          m[r] = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_and_ps(_mm_loadu_ps(we + 4 * r), magnitude)), p, m[r]);
      }
    }
    for (int r = 0; r < 4; ++r) {
      if (any_signal) _mm256_storeu_pd(cur + u + 4 * r, c[r]);
      if (any_prospective) _mm256_storeu_pd(miss + u + 4 * r, m[r]);
    }
  }
  u_io = u;
}
bool cpu_has_fma() {
  static const bool has = __builtin_cpu_supports("fma");
  return has;
}

}  // namespace cpu
}  // namespace ttfs
#endif
