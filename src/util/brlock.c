/* brlock.c - big-reader lock: an array of cache-line sized spinning
 * reader-writer locks. Read lock/unlock: one atomic add each, O(1).
 * Write lock: O(slots) atomic operations plus waiting for readers. */
#include "util/brlock.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define BRLOCK_WRITER 0x80000000u
#define BRLOCK_SPINS 64

/* One slot per cache line so that readers on different slots never share one. */
struct brlock_slot {
    _Alignas(64) atomic_uint state; /* reader count | BRLOCK_WRITER */
};

struct brlock {
    struct brlock_slot *slots;
    int nslots;
    pthread_mutex_t writers;
};

static inline void brlock_relax(unsigned *spins)
{
    if (++*spins < BRLOCK_SPINS) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        *spins = 0;
        sched_yield();
    }
}

struct brlock *brlock_new(int slots)
{
    if (slots < 1)
        slots = 1;
    struct brlock *l = malloc(sizeof(*l));
    if (!l)
        return NULL;
    l->slots = aligned_alloc(64, sizeof(struct brlock_slot) * (size_t)slots);
    if (!l->slots) {
        free(l);
        return NULL;
    }
    for (int i = 0; i < slots; i++)
        atomic_init(&l->slots[i].state, 0);
    l->nslots = slots;
    if (pthread_mutex_init(&l->writers, NULL) != 0) {
        free(l->slots);
        free(l);
        return NULL;
    }
    return l;
}

void brlock_free(struct brlock *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->writers);
    free(l->slots);
    free(l);
}

int brlock_slots(const struct brlock *l)
{
    return l->nslots;
}

void brlock_rdlock(struct brlock *l, int slot)
{
    atomic_uint *s = &l->slots[slot].state;
    unsigned spins = 0;
    for (;;) {
        /* Optimistic: announce ourselves, then check for a writer. The add
         * and the writer's fetch_or are ordered on the same word, so either
         * the writer sees our count or we see its bit. */
        unsigned v = atomic_fetch_add_explicit(s, 1, memory_order_acquire);
        if (!(v & BRLOCK_WRITER))
            return;
        atomic_fetch_sub_explicit(s, 1, memory_order_relaxed);
        while (atomic_load_explicit(s, memory_order_relaxed) & BRLOCK_WRITER)
            brlock_relax(&spins);
    }
}

void brlock_rdunlock(struct brlock *l, int slot)
{
    atomic_fetch_sub_explicit(&l->slots[slot].state, 1, memory_order_release);
}

void brlock_wrlock(struct brlock *l)
{
    pthread_mutex_lock(&l->writers);
    /* Block new readers everywhere first, then wait for each slot to drain:
     * the waits overlap instead of adding up. */
    for (int i = 0; i < l->nslots; i++)
        atomic_fetch_or_explicit(&l->slots[i].state, BRLOCK_WRITER, memory_order_acquire);
    for (int i = 0; i < l->nslots; i++) {
        unsigned spins = 0;
        while (atomic_load_explicit(&l->slots[i].state, memory_order_acquire) != BRLOCK_WRITER)
            brlock_relax(&spins);
    }
}

void brlock_wrunlock(struct brlock *l)
{
    for (int i = 0; i < l->nslots; i++)
        atomic_fetch_and_explicit(&l->slots[i].state, ~BRLOCK_WRITER, memory_order_release);
    pthread_mutex_unlock(&l->writers);
}
