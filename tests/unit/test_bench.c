/* test_bench.c - unit tests of petrel-bench's measurement structures: the
 * log-linear latency histogram and the per-stream sequence tracker. */
#include "test.h"

#include "../../tools/petrel-bench/hist.c"
#include "../../tools/petrel-bench/seq.c"

#include <stdlib.h>

TEST(hist_exact_small_values)
{
    static struct hist h;
    hist_init(&h);
    for (uint64_t v = 1; v <= 100; v++)
        hist_add(&h, v);
    CHECK_EQ(h.count, 100);
    CHECK_EQ(hist_percentile(&h, 50), 50);
    CHECK_EQ(hist_percentile(&h, 90), 90);
    CHECK_EQ(hist_percentile(&h, 99), 99);
    CHECK_EQ(hist_percentile(&h, 100), 100);
    CHECK_EQ(h.max, 100);
    CHECK_EQ(h.min, 1);
}

TEST(hist_relative_error)
{
    /* Every value maps to a bucket whose high end is within 1/64 above it. */
    for (uint64_t v = 1; v < 60000000000ull; v = v * 3 / 2 + 7) {
        uint32_t i = hist_index(v);
        CHECK(i < HIST_BUCKETS);
        uint64_t hi = hist_bucket_high(i);
        CHECK(hi >= v);
        CHECK((double)(hi - v) <= (double)v / 64.0 + 1);
        if (i > 0)
            CHECK(hist_bucket_high(i - 1) < v);
    }
    CHECK(hist_index(HIST_MAX_NS * 10) == hist_index(HIST_MAX_NS));
    CHECK(hist_index(HIST_MAX_NS) < HIST_BUCKETS);
}

TEST(hist_percentiles_and_merge)
{
    static struct hist a, b;
    hist_init(&a);
    hist_init(&b);
    for (int i = 0; i < 990; i++)
        hist_add(&a, 1000000); /* 1 ms */
    for (int i = 0; i < 10; i++)
        hist_add(&b, 50000000); /* 50 ms */
    hist_merge(&a, &b);
    CHECK_EQ(a.count, 1000);
    uint64_t p50 = hist_percentile(&a, 50), p99 = hist_percentile(&a, 99);
    uint64_t p999 = hist_percentile(&a, 99.9);
    CHECK(p50 >= 1000000 && p50 <= 1016000);
    CHECK(p99 >= 1000000 && p99 <= 1016000);
    CHECK_EQ(p999, 50000000); /* clamped to the exact maximum */
    CHECK_EQ(a.max, 50000000);
    static struct hist e;
    hist_init(&e);
    CHECK_EQ(hist_percentile(&e, 99), 0);
}

TEST(seq_in_order)
{
    struct seqtrk t;
    seqtrk_init(&t, 1024);
    for (uint32_t s = 0; s < 100000; s++)
        CHECK_EQ(seqtrk_add(&t, s), SEQ_NEW);
    CHECK_EQ(t.uniq, 100000);
    CHECK_EQ(t.dup, 0);
    CHECK_EQ(t.reord, 0);
    CHECK_EQ(t.top, 100000);
    seqtrk_free(&t);
}

TEST(seq_gaps_dups_reorder)
{
    struct seqtrk t;
    seqtrk_init(&t, 64);
    CHECK_EQ(seqtrk_add(&t, 0), SEQ_NEW);
    CHECK_EQ(seqtrk_add(&t, 2), SEQ_NEW);       /* 1 missing so far */
    CHECK_EQ(seqtrk_add(&t, 1), SEQ_REORDERED); /* late but new */
    CHECK_EQ(seqtrk_add(&t, 2), SEQ_DUP);
    CHECK_EQ(seqtrk_add(&t, 0), SEQ_DUP);
    CHECK_EQ(seqtrk_add(&t, 5), SEQ_NEW);       /* 3, 4 lost */
    CHECK_EQ(t.uniq, 4);
    CHECK_EQ(t.dup, 2);
    CHECK_EQ(t.reord, 1);
    CHECK_EQ(t.top, 6);
    /* loss as the caller computes it: sent - unique */
    CHECK_EQ(6 - t.uniq, 2);
    seqtrk_free(&t);
}

TEST(seq_window_slides)
{
    struct seqtrk t;
    seqtrk_init(&t, 128);
    CHECK_EQ(t.window, 128);
    /* Every number twice, far beyond the window: dups are found each time. */
    for (uint32_t s = 0; s < 10000; s++) {
        CHECK_EQ(seqtrk_add(&t, s), SEQ_NEW);
        CHECK_EQ(seqtrk_add(&t, s), SEQ_DUP);
    }
    CHECK_EQ(t.uniq, 10000);
    CHECK_EQ(t.dup, 10000);
    /* A jump larger than the window clears it; a dup inside is still found. */
    CHECK_EQ(seqtrk_add(&t, 100000), SEQ_NEW);
    CHECK_EQ(seqtrk_add(&t, 99990), SEQ_REORDERED);
    CHECK_EQ(seqtrk_add(&t, 99990), SEQ_DUP);
    /* Older than the window: counted as unique, reordered and late. */
    CHECK_EQ(seqtrk_add(&t, 5000), SEQ_REORDERED);
    CHECK_EQ(t.late, 1);
    /* Words cleared by a partial slide do not keep stale bits. */
    struct seqtrk u;
    seqtrk_init(&u, 256);
    for (uint32_t s = 0; s < 256; s += 2)
        seqtrk_add(&u, s);
    for (uint32_t s = 256; s < 512; s++)
        CHECK_EQ(seqtrk_add(&u, s), SEQ_NEW);
    CHECK_EQ(u.uniq, 128 + 256);
    CHECK_EQ(u.dup, 0);
    seqtrk_free(&t);
    seqtrk_free(&u);
}

TEST(seq_random_permutation)
{
    /* A shuffled stream within the window: every number once, no dup. */
    enum { N = 5000 };
    static uint32_t v[N];
    for (uint32_t i = 0; i < N; i++)
        v[i] = i;
    srand(7);
    for (uint32_t i = N - 1; i > 0; i--) {
        uint32_t j = (uint32_t)rand() % (i + 1), x = v[i];
        v[i] = v[j];
        v[j] = x;
    }
    struct seqtrk t;
    seqtrk_init(&t, 8192);
    for (uint32_t i = 0; i < N; i++)
        CHECK(seqtrk_add(&t, v[i]) != SEQ_DUP);
    for (uint32_t i = 0; i < N; i += 10)
        CHECK_EQ(seqtrk_add(&t, v[i]), SEQ_DUP);
    CHECK_EQ(t.uniq, N);
    CHECK_EQ(t.dup, N / 10);
    CHECK_EQ(t.late, 0);
    seqtrk_free(&t);
}

int main(void)
{
    RUN(hist_exact_small_values);
    RUN(hist_relative_error);
    RUN(hist_percentiles_and_merge);
    RUN(seq_in_order);
    RUN(seq_gaps_dups_reorder);
    RUN(seq_window_slides);
    RUN(seq_random_permutation);
    return test_report();
}
