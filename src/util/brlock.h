/* brlock.h - a big-reader lock: one reader-writer lock per reader slot.
 *
 * Readers take only their own slot, so readers on different slots never
 * write the same cache line; a writer takes every slot in order. Use it
 * where reads vastly outnumber writes (the subscription router).
 *
 * Each slot is a spinning lock built on one atomic word (reader count plus a
 * writer bit): a read lock or unlock is a single atomic add on the slot's own
 * cache line. Waiters spin briefly, then yield the CPU. A writer sets the
 * writer bit before it waits for readers to drain, so writers do not starve.
 * Writers are serialised by a mutex.
 */
#ifndef PETREL_UTIL_BRLOCK_H
#define PETREL_UTIL_BRLOCK_H

struct brlock;

/* slots >= 1. Returns NULL when out of memory. */
struct brlock *brlock_new(int slots);
void brlock_free(struct brlock *l);
int brlock_slots(const struct brlock *l);

/* 0 <= slot < slots. Read locks are not recursive across a writer: a thread
 * must not take the same slot twice while a writer may be waiting. */
void brlock_rdlock(struct brlock *l, int slot);
void brlock_rdunlock(struct brlock *l, int slot);

void brlock_wrlock(struct brlock *l);
void brlock_wrunlock(struct brlock *l);

#endif
