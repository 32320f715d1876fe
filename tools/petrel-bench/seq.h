/* seq.h - per-stream sequence tracking for petrel-bench.
 *
 * One tracker follows the sequence numbers of one publisher as seen by one
 * subscriber (or by a whole shared-subscription group). It counts unique
 * messages, duplicates and reordered arrivals exactly within a sliding
 * window of the most recent `window` sequence numbers (a power of two).
 * A number that arrives after it fell out of the window cannot be checked
 * for duplication; it is counted as unique, reordered and "late".
 * Loss is computed by the caller: messages sent - unique.
 */
#ifndef PETREL_BENCH_SEQ_H
#define PETREL_BENCH_SEQ_H

#include <stdint.h>

enum seq_result { SEQ_NEW = 0, SEQ_REORDERED = 1, SEQ_DUP = 2 };

struct seqtrk {
    uint64_t *bits;   /* ring of `window` bits; NULL until the first message */
    uint32_t window;  /* power of two, >= 64 */
    uint32_t base;    /* lowest sequence number inside the window */
    uint64_t top;     /* highest sequence number seen + 1 (0: none) */
    uint64_t uniq, dup, reord, late;
};

void seqtrk_init(struct seqtrk *t, uint32_t window);
/* Record one arrival; returns SEQ_NEW, SEQ_REORDERED (new but below the
 * highest seen) or SEQ_DUP. Returns -1 only if memory runs out. */
int seqtrk_add(struct seqtrk *t, uint32_t seq);
void seqtrk_free(struct seqtrk *t);

#endif
