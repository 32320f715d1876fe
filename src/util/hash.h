/* hash.h - a fast non-cryptographic hash for short keys (client ids,
 * topic levels): FNV-1a, 32 bits. Not for untrusted-key hash tables that
 * must resist flooding; tables keyed by client input add a per-process seed. */
#ifndef PETREL_UTIL_HASH_H
#define PETREL_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t hash_bytes(const void *p, size_t n, uint32_t seed)
{
    const uint8_t *s = p;
    uint32_t h = 2166136261u ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 16777619u;
    }
    /* Final avalanche so that low bits (used for "% workers") mix well. */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    return h;
}

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

#endif
