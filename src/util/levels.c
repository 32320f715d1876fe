/* levels.c - children of a topic-level trie node (see levels.h). */
#include "util/levels.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

uint32_t level_hash(uint64_t seed, const uint8_t *p, size_t n)
{
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    if (n)
        memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebULL;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return (uint32_t)h;
}

uint64_t level_seed(const void *owner)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t h = level_hash((uint64_t)(uintptr_t)owner ^ 0x243f6a8885a308d3ULL,
                            (const uint8_t *)&ts, sizeof(ts));
    return (h << 32) ^ (uint64_t)ts.tv_nsec;
}

static inline bool key_is(const struct level_key *k, uint32_t h, const uint8_t *p, uint32_t len)
{
    return k->hval == h && k->len == len && memcmp(k->bytes, p, len) == 0;
}

static inline bool is_array(const struct level_table *t)
{
    return t->cap <= LEVELS_LINEAR;
}

struct level_key *level_find(const struct level_table *t, uint32_t h, const uint8_t *p,
                             uint32_t len)
{
    if (is_array(t)) {
        for (uint32_t i = 0; i < t->count; i++)
            if (key_is(t->slots[i], h, p, len))
                return t->slots[i];
        return NULL;
    }
    uint32_t mask = t->cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        struct level_key *k = t->slots[i];
        if (!k)
            return NULL;
        if (key_is(k, h, p, len))
            return k;
    }
}

static int resize(struct level_table *t, uint32_t cap)
{
    struct level_key **s = calloc(cap, sizeof(*s));
    if (!s)
        return -1;
    uint32_t j = 0;
    uint32_t old = is_array(t) ? t->count : t->cap;
    for (uint32_t i = 0; i < old; i++) {
        struct level_key *k = t->slots[i];
        if (!k)
            continue;
        if (cap <= LEVELS_LINEAR) {
            s[j++] = k;
        } else {
            uint32_t slot = k->hval & (cap - 1);
            while (s[slot])
                slot = (slot + 1) & (cap - 1);
            s[slot] = k;
        }
    }
    free(t->slots);
    t->slots = s;
    t->cap = cap;
    return 0;
}

int level_add(struct level_table *t, struct level_key *k)
{
    if (is_array(t)) {
        if (t->count == t->cap) {
            uint32_t cap = t->cap ? t->cap * 2 : 2;
            if (cap > LEVELS_LINEAR)
                cap = LEVELS_TABLE_MIN;
            if (resize(t, cap) < 0)
                return -1;
        }
        if (is_array(t)) {
            t->slots[t->count++] = k;
            return 0;
        }
    } else if ((t->count + 1) * 2 > t->cap && resize(t, t->cap * 2) < 0) {
        return -1;
    }
    uint32_t mask = t->cap - 1;
    uint32_t s = k->hval & mask;
    while (t->slots[s])
        s = (s + 1) & mask;
    t->slots[s] = k;
    t->count++;
    return 0;
}

void level_del(struct level_table *t, struct level_key *k)
{
    if (is_array(t)) {
        for (uint32_t i = 0; i < t->count; i++) {
            if (t->slots[i] == k) {
                t->slots[i] = t->slots[--t->count];
                break;
            }
        }
        if (t->count == 0)
            level_table_free(t);
        return;
    }
    /* Backward-shift deletion keeps probe sequences intact without tombstones. */
    uint32_t mask = t->cap - 1;
    uint32_t i = k->hval & mask;
    while (t->slots[i] != k)
        i = (i + 1) & mask;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!t->slots[j])
            break;
        uint32_t home = t->slots[j]->hval & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i] = NULL;
    t->count--;
    /* Shrink with hysteresis; failure to shrink is harmless. */
    if (t->count <= LEVELS_LINEAR / 2)
        resize(t, LEVELS_LINEAR);
    else if (t->cap > LEVELS_TABLE_MIN && t->count * 8 < t->cap)
        resize(t, t->cap / 2);
}

struct level_key *level_from(const struct level_table *t, uint32_t i, bool skip_dollar)
{
    uint32_t end = is_array(t) ? t->count : t->cap;
    for (; i < end; i++) {
        struct level_key *k = t->slots[i];
        if (k && !(skip_dollar && k->len && k->bytes[0] == '$'))
            return k;
    }
    return NULL;
}

struct level_key *level_next(const struct level_table *t, const struct level_key *k,
                             bool skip_dollar)
{
    uint32_t i;
    if (is_array(t)) {
        for (i = 0; t->slots[i] != k; i++)
            ;
    } else {
        uint32_t mask = t->cap - 1;
        for (i = k->hval & mask; t->slots[i] != k; i = (i + 1) & mask)
            ;
    }
    return level_from(t, i + 1, skip_dollar);
}

struct level_key *level_pop(struct level_table *t)
{
    if (!t->count)
        return NULL;
    if (!is_array(t)) {
        /* Compact into the front and read it as an array from now on. */
        uint32_t j = 0;
        for (uint32_t i = 0; i < t->cap; i++)
            if (t->slots[i])
                t->slots[j++] = t->slots[i];
        t->cap = LEVELS_LINEAR;
    }
    return t->slots[--t->count];
}

void level_table_free(struct level_table *t)
{
    free(t->slots);
    t->slots = NULL;
    t->count = t->cap = 0;
}
