/* hist.h - log-linear latency histogram for petrel-bench.
 *
 * Values (nanoseconds) are bucketed with a relative error below 1/64
 * (two significant decimal digits): values under 128 are exact, above that
 * every power of two is split into 64 linear sub-buckets. Values above
 * HIST_MAX_NS (60 s) are clamped into the last bucket; the exact maximum is
 * kept separately. Histograms from several threads are merged with
 * hist_merge().
 */
#ifndef PETREL_BENCH_HIST_H
#define PETREL_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 6                     /* 64 sub-buckets per power of two */
#define HIST_MAX_NS 60000000000ull          /* 60 s */
#define HIST_BUCKETS (128 + 30 * 64)        /* covers up to 2^36 ns > 60 s */

struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t min;
    uint64_t sum;
    uint64_t b[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_add(struct hist *h, uint64_t v);
void hist_merge(struct hist *dst, const struct hist *src);
/* Value at percentile p (0 < p <= 100): the highest value of the bucket
 * holding the ceil(p% * count)-th smallest sample, never above the maximum.
 * 0 when empty. */
uint64_t hist_percentile(const struct hist *h, double p);
/* Bucket index of v and the highest value that maps to a bucket. */
uint32_t hist_index(uint64_t v);
uint64_t hist_bucket_high(uint32_t idx);

#endif
