"""Philox4x32-10 counter-based random numbers (Salmon et al., Random123), in numpy.

Every backend draws the softmax output layer's uniforms from this stream
(SEMANTICS.md): key = (seed low word, seed high word), counter = (neuron
index in the layer, sample index in the whole input, step t from 1, 0),
``u = (word0 >> 8) * 2**-24``. ``csrc/core/philox.h`` is the same function
for C++ and CUDA.
"""
from __future__ import annotations

import numpy as np

_MASK = np.uint64(0xFFFFFFFF)
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)


def philox4x32(counter, key, rounds: int = 10):
    """Philox4x32 of broadcastable uint32 words; returns four uint32 arrays."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & _MASK for c in counter)
    k0, k1 = (np.uint64(int(k) & 0xFFFFFFFF) for k in key)
    for _ in range(rounds):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _MASK,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _MASK)
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return tuple(np.asarray(c, dtype=np.uint32) for c in (c0, c1, c2, c3))


def seed_key(seed: int) -> tuple:
    return (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)


def softmax_uniforms(seed: int, num_neurons: int, sample_indices, step: int) -> np.ndarray:
    """(len(sample_indices), num_neurons) float32 uniforms in [0, 1) for step ``step``."""
    neuron = np.arange(num_neurons, dtype=np.uint64)[None, :]
    sample = np.asarray(sample_indices, dtype=np.uint64)[:, None]
    word0 = philox4x32((neuron, sample, np.uint64(step), np.uint64(0)), seed_key(seed))[0]
    return ((word0 >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24))
