// The block kernels of the grouped scatter (grouped_scatter.h), in AVX-512
// and in AVX2, for float64 and float32 running sums. For float64 sums a term
// is one converting load and one fused multiply-add, which equals the
// multiply and the add of add_weight_run (synapse.h): the product of two
// floats is exact in double, so the fused and the separate operations round
// alike. For float32 sums the multiply and the add stay separate, as there.
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
                                                                  const float* __restrict w, const GroupTerm<double>* terms,
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
      const GroupTerm<double>& t = terms[e];
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
      const GroupTerm<double>& t = terms[e];
      const __m256 wv = _mm256_loadu_ps(w + t.k + u);
      if (t.signal) c = _mm512_fmadd_pd(_mm512_cvtps_pd(wv), _mm512_set1_pd(t.a), c);
      if (t.prospective) m = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_and_ps(wv, magnitude)), _mm512_set1_pd(t.p), m);
    }
    if (any_signal) _mm512_storeu_pd(cur + u, c);
    if (any_prospective) _mm512_storeu_pd(miss + u, m);
  }
  u_io = u;
}

// The same for AVX2 with FMA (grouped_scatter_pays checks the CPU has it), 16 sums at a time.
__attribute__((target("avx2,fma"))) void add_group_blocks_avx2(double* __restrict cur, double* __restrict miss,
                                                                  const float* __restrict w, const GroupTerm<double>* terms,
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
      const GroupTerm<double>& t = terms[e];
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
// float32 sums (EngineOptions cpu_sums='float32'): multiply, then add, each
// rounded to float32 as add_weight_run does; 128 sums at a time, then 16.
__attribute__((target(TTFS_AVX512))) void add_group_blocks_avx512(float* __restrict cur, float* __restrict miss,
                                                                  const float* __restrict w,
                                                                  const GroupTerm<float>* terms, int count,
                                                                  int64_t& u_io, int64_t n, bool any_signal,
                                                                  bool any_prospective) {
  const __m512 magnitude = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  int64_t u = u_io;
  for (; u + 128 <= n; u += 128) {
    __m512 c[8], m[8];
    for (int r = 0; r < 8; ++r) {
      c[r] = any_signal ? _mm512_loadu_ps(cur + u + 16 * r) : _mm512_setzero_ps();
      m[r] = any_prospective ? _mm512_loadu_ps(miss + u + 16 * r) : _mm512_setzero_ps();
    }
    for (int e = 0; e < count; ++e) {
      const GroupTerm<float>& t = terms[e];
      const float* we = w + t.k + u;
      if (t.signal) {
        const __m512 a = _mm512_set1_ps(t.a);
        for (int r = 0; r < 8; ++r) c[r] = _mm512_add_ps(c[r], _mm512_mul_ps(_mm512_loadu_ps(we + 16 * r), a));
      }
      if (t.prospective) {
        const __m512 p = _mm512_set1_ps(t.p);
        for (int r = 0; r < 8; ++r)
          m[r] = _mm512_add_ps(m[r], _mm512_mul_ps(_mm512_and_ps(_mm512_loadu_ps(we + 16 * r), magnitude), p));
      }
    }
    for (int r = 0; r < 8; ++r) {
      if (any_signal) _mm512_storeu_ps(cur + u + 16 * r, c[r]);
      if (any_prospective) _mm512_storeu_ps(miss + u + 16 * r, m[r]);
    }
  }
  for (; u + 16 <= n; u += 16) {
    __m512 c = any_signal ? _mm512_loadu_ps(cur + u) : _mm512_setzero_ps();
    __m512 m = any_prospective ? _mm512_loadu_ps(miss + u) : _mm512_setzero_ps();
    for (int e = 0; e < count; ++e) {
      const GroupTerm<float>& t = terms[e];
      const __m512 wv = _mm512_loadu_ps(w + t.k + u);
      if (t.signal) c = _mm512_add_ps(c, _mm512_mul_ps(wv, _mm512_set1_ps(t.a)));
      if (t.prospective) m = _mm512_add_ps(m, _mm512_mul_ps(_mm512_and_ps(wv, magnitude), _mm512_set1_ps(t.p)));
    }
    if (any_signal) _mm512_storeu_ps(cur + u, c);
    if (any_prospective) _mm512_storeu_ps(miss + u, m);
  }
  u_io = u;
}

// The same in AVX2, 32 sums at a time.
__attribute__((target("avx2"))) void add_group_blocks_avx2(float* __restrict cur, float* __restrict miss,
                                                          const float* __restrict w, const GroupTerm<float>* terms,
                                                          int count, int64_t& u_io, int64_t n, bool any_signal,
                                                          bool any_prospective) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  int64_t u = u_io;
  for (; u + 32 <= n; u += 32) {
    __m256 c[4], m[4];
    for (int r = 0; r < 4; ++r) {
      c[r] = any_signal ? _mm256_loadu_ps(cur + u + 8 * r) : _mm256_setzero_ps();
      m[r] = any_prospective ? _mm256_loadu_ps(miss + u + 8 * r) : _mm256_setzero_ps();
    }
    for (int e = 0; e < count; ++e) {
      const GroupTerm<float>& t = terms[e];
      const float* we = w + t.k + u;
      if (t.signal) {
        const __m256 a = _mm256_set1_ps(t.a);
        for (int r = 0; r < 4; ++r) c[r] = _mm256_add_ps(c[r], _mm256_mul_ps(_mm256_loadu_ps(we + 8 * r), a));
      }
      if (t.prospective) {
        const __m256 p = _mm256_set1_ps(t.p);
        for (int r = 0; r < 4; ++r)
          m[r] = _mm256_add_ps(m[r], _mm256_mul_ps(_mm256_and_ps(_mm256_loadu_ps(we + 8 * r), magnitude), p));
      }
    }
    for (int r = 0; r < 4; ++r) {
      if (any_signal) _mm256_storeu_ps(cur + u + 8 * r, c[r]);
      if (any_prospective) _mm256_storeu_ps(miss + u + 8 * r, m[r]);
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
