// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC'11) for the stochastic softmax output. The same function runs on the
// host and the device, and python/ttfs_native/philox.py is its numpy twin.
#pragma once

#include <cstdint>

#include "common.h"

namespace ttfs {

struct Philox4 {
  uint32_t w[4];
};

TTFS_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

TTFS_HD Philox4 philox4x32_10(Philox4 c, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(0xD2511F53u, c.w[0], hi0, lo0);
    mulhilo32(0xCD9E8D57u, c.w[2], hi1, lo1);
    c = Philox4{{hi1 ^ c.w[1] ^ k0, lo1, hi0 ^ c.w[3] ^ k1, lo0}};
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c;
}

// SEMANTICS.md: counter = (neuron, sample in the whole input, step t, 0),
// key = (seed low, seed high), u = (word0 >> 8) * 2^-24 in [0, 1).
TTFS_HD float softmax_uniform(uint64_t seed, uint32_t neuron, uint32_t sample, uint32_t step) {
  const Philox4 r = philox4x32_10(Philox4{{neuron, sample, step, 0u}},
                                  static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return static_cast<float>(r.w[0] >> 8) * (1.0f / 16777216.0f);
}

}  // namespace ttfs
