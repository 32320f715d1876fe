/* seq.c - per-stream sequence tracking (see seq.h). */
#include "seq.h"

#include <stdlib.h>
#include <string.h>

void seqtrk_init(struct seqtrk *t, uint32_t window)
{
    memset(t, 0, sizeof *t);
    uint32_t w = 64;
    while (w < window && w < (1u << 30))
        w <<= 1;
    t->window = w;
}

void seqtrk_free(struct seqtrk *t)
{
    free(t->bits);
    t->bits = NULL;
}

static inline void bit_clear(uint64_t *bits, uint32_t i)
{
    bits[i >> 6] &= ~((uint64_t)1 << (i & 63));
}

/* Move the window so that it starts at nb, clearing the slots that leave. */
static void slide(struct seqtrk *t, uint32_t nb)
{
    uint32_t mask = t->window - 1;
    uint64_t span = (uint64_t)nb - t->base;
    if (span >= t->window) {
        memset(t->bits, 0, t->window / 8);
    } else {
        for (uint32_t s = t->base; s != nb; s++) {
            uint32_t i = s & mask;
            if ((i & 63) == 0 && (uint32_t)(nb - s) >= 64) {
                t->bits[i >> 6] = 0;
                s += 63;
                continue;
            }
            bit_clear(t->bits, i);
        }
    }
    t->base = nb;
}

int seqtrk_add(struct seqtrk *t, uint32_t seq)
{
    if (!t->bits) {
        t->bits = calloc(t->window / 64, sizeof(uint64_t));
        if (!t->bits)
            return -1;
    }
    if (seq < t->base) {
        t->uniq++;
        t->reord++;
        t->late++;
        return SEQ_REORDERED;
    }
    if ((uint64_t)seq >= (uint64_t)t->base + t->window)
        slide(t, seq - t->window + 1);
    uint32_t i = seq & (t->window - 1);
    uint64_t m = (uint64_t)1 << (i & 63);
    if (t->bits[i >> 6] & m) {
        t->dup++;
        return SEQ_DUP;
    }
    t->bits[i >> 6] |= m;
    t->uniq++;
    if ((uint64_t)seq + 1 < t->top) {
        t->reord++;
        return SEQ_REORDERED;
    }
    t->top = (uint64_t)seq + 1;
    return SEQ_NEW;
}
