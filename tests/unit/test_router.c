/* test_router.c - subscription router: matching rules, merging, shared
 * groups, memory pruning and concurrent use. */
#include "broker/router.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "mqtt/topic.h"
#include "test.h"

struct fake {
    uint64_t cid;
    bool offline;
    bool busy;
    uint32_t inflight;
    atomic_int refs;
};

static void fake_ref(void *s)
{
    atomic_fetch_add(&((struct fake *)s)->refs, 1);
}

static bool fake_online(void *s)
{
    return !((struct fake *)s)->offline;
}

static uint32_t fake_inflight(void *s)
{
    return ((struct fake *)s)->inflight;
}

static bool fake_busy(void *s)
{
    return ((struct fake *)s)->busy;
}

static uint64_t fake_id(void *s)
{
    return ((struct fake *)s)->cid;
}

static const struct router_ops ops = {fake_ref, fake_online, fake_inflight, fake_busy};

static struct router *mk(enum shared_strategy st)
{
    struct router *r = router_new(&ops, st, 4);
    CHECK(r != NULL);
    return r;
}

static int sub(struct router *r, const char *f, struct fake *s, uint8_t qos, uint32_t id)
{
    struct mqtt_sub_opts o = {.qos = qos};
    return router_subscribe(r, (const uint8_t *)f, strlen(f), s, &o, id);
}

static int sub_opts(struct router *r, const char *f, struct fake *s,
                    const struct mqtt_sub_opts *o, uint32_t id)
{
    return router_subscribe(r, (const uint8_t *)f, strlen(f), s, o, id);
}

static bool unsub(struct router *r, const char *f, struct fake *s)
{
    return router_unsubscribe(r, (const uint8_t *)f, strlen(f), s);
}

static struct route_query query(const char *t)
{
    struct route_query q = {.topic = (const uint8_t *)t, .topic_len = strlen(t),
                            .sub_id_of = fake_id};
    return q;
}

static size_t match_q(struct router *r, const struct route_query *q, struct route *out,
                      size_t cap)
{
    return router_match(r, q, out, cap);
}

static size_t match(struct router *r, const char *t, struct route *out, size_t cap)
{
    struct route_query q = query(t);
    return match_q(r, &q, out, cap);
}

static bool matches(struct router *r, const char *t, struct fake *s)
{
    struct route out[64];
    size_t n = match(r, t, out, 64);
    for (size_t i = 0; i < n && i < 64; i++)
        if (out[i].sub == s)
            return true;
    return false;
}

TEST(test_exact)
{
    struct router *r = mk(SHARED_ROUND_ROBIN);
    struct fake a = {0}, b = {0};
    CHECK_EQ(sub(r, "a/b/c", &a, 1, 0), 0);
    CHECK_EQ(sub(r, "a/b", &b, 0, 0), 0);
    struct route out[4];
    CHECK_EQ(match(r, "a/b/c", out, 4), 1);
    CHECK(out[0].sub == &a);
    CHECK_EQ(out[0].opts.qos, 1);
    CHECK(out[0].group == NULL);
    CHECK_EQ(out[0].sub_id_count, 0);
    CHECK_EQ(atomic_load(&a.refs), 1);
    CHECK_EQ(match(r, "a/b", out, 4), 1);
    CHECK(out[0].sub == &b);
    CHECK_EQ(match(r, "a/b/c/d", out, 4), 0);
    CHECK_EQ(match(r, "a", out, 4), 0);
    CHECK_EQ(match(r, "a/b/", out, 4), 0);
    CHECK_EQ(match(r, "x", out, 4), 0);
    CHECK_EQ(router_count(r), 2);
    router_free(r);
}

TEST(test_plus)
{
    struct router *r = mk(SHARED_ROUND_ROBIN);
    struct fake a = {0}, b = {0}, c = {0};
    sub(r, "a/+/c", &a, 0, 0);
    sub(r, "+", &b, 0, 0);
    sub(r, "+/+", &c, 0, 0);
    CHECK(matches(r, "a/x/c", &a));
    CHECK(matches(r, "a//c", &a));
    CHECK(!matches(r, "a/x/y/c", &a));
    CHECK(!matches(r, "a/x", &a));
    CHECK(matches(r, "a", &b));
    CHECK(!matches(r, "a/b", &b));
    CHECK(!matches(r, "/", &b));
    CHECK(matches(r, "/", &c));
    CHECK(matches(r, "a/b", &c));
    CHECK(!matches(r, "a", &c));
    router_free(r);
}

TEST(test_hash)
{
    struct router *r = mk(SHARED_ROUND_ROBIN);
    struct fake a = {0}, b = {0}, c = {0};
    sub(r, "a/#", &a, 0, 0);
    sub(r, "#", &b, 0, 0);
    sub(r, "a/+/#", &c, 0, 0);
    CHECK(matches(r, "a", &a));
    CHECK(matches(r, "a/b", &a));
    CHECK(matches(r, "a/b/c/d", &a));
    CHECK(matches(r, "a/", &a));
    CHECK(!matches(r, "b", &a));
    CHECK(!matches(r, "ab", &a));
    CHECK(matches(r, "x/y", &b));
    CHECK(matches(r, "/", &b));
    CHECK(matches(r, "a/b", &c));
    CHECK(matches(r, "a/b/c", &c));
    CHECK(!matches(r, "a", &c));
    router_free(r);
}

TEST(test_dollar)
{
    struct router *r = mk(SHARED_ROUND_ROBIN);
    struct fake a = {0}, b = {0}, c = {0}, d = {0};
    sub(r, "#", &a, 0, 0);
    sub(r, "+/x", &b, 0, 0);
    sub(r, "$SYS/#", &c, 0, 0);
    sub(r, "$SYS/+", &d, 0, 0);
    CHECK(!matches(r, "$SYS/x", &a));
    CHECK(!matches(r, "$SYS/x", &b));
    CHECK(matches(r, "$SYS/x", &c));
    CHECK(matches(r, "$SYS/x", &d));
    CHECK(matches(r, "$SYS", &c));
    CHECK(matches(r, "y/x", &b));
    CHECK(matches(r, "y/$x", &a)); /* only a leading '$' is special */
    router_free(r);
}

TEST(test_merge)
{
    struct router *r = mk(SHARED_ROUND_ROBIN);
    struct fake a = {0}, b = {0};
    struct mqtt_sub_opts rap = {.qos = 2, .retain_as_published = true};
    sub(r, "a/b", &a, 0, 1);
    sub_opts(r, "a/+", &a, &rap, 2);
    sub(r, "#", &a, 1, 0);
    sub(r, "a/b", &b, 1, 9);
    struct route out[8];
    CHECK_EQ(match(r, "a/b", out, 8), 2);
    struct route *ra = out[0].sub == &a ? &out[0] : &out[1];
    struct route *rb = out[0].sub == &a ? &out[1] : &out[0];
    CHECK(ra->sub == &a && rb->sub == &b);
    CHECK_EQ(ra->opts.qos, 2);
    CHECK(ra->opts.retain_as_published);
    CHECK_EQ(ra->sub_id_count, 2);
    CHECK((ra->sub_ids[0] == 1 && ra->sub_ids[1] == 2) ||
          (ra->sub_ids[0] == 2 && ra->sub_ids[1] == 1));
    CHECK_EQ(rb->sub_id_count, 1);
    CHECK_EQ(rb->sub_ids[0], 9);
    CHECK_EQ(atomic_load(&a.refs), 1); /* one reference per route */

    /* At most 8 identifiers are kept. */
    static const char *f[] = {"x/y/z", "x/y/+", "x/+/z", "+/y/z", "x/+/+", "+/+/z",
                              "+/y/+", "+/+/+", "x/#", "x/y/#", "x/y/z/#"};
    for (uint32_t i = 0; i < 11; i++)
        sub(r, f[i], &b, 0, 100 + i);
    CHECK_EQ(match(r, "x/y/z", out, 8), 2); /* a via '#', b merged */
    struct route *rb2 = out[0].sub == &b ? &out[0] : &out[1];
    CHECK_EQ(rb2->sub_id_count, 8);
    router_free(r);
}

TEST(test_merge_many)
{
    /* 60 sessions x 3 overlapping filters: more than 16 routes to sort, and
     * out[] too small for the unmerged 180 until duplicates are merged. */
    struct router *r = mk(SHARED_ROUND_ROBIN);
    static struct fake s[60];
    for (int i = 0; i < 60; i++) {
        memset(&s[i], 0, sizeof(s[i]));
        sub(r, "a/b", &s[i], 0, 1);
        sub(r, "a/+", &s[i], 1, 2);
        sub(r, "#", &s[i], 0, 3);
    }
    struct route out[100];
    CHECK_EQ(match(r, "a/b", out, 100), 60);
    bool seen[60] = {0};
    for (int i = 0; i < 60; i++) {
        long k = (struct fake *)out[i].sub - s;
        CHECK(k >= 0 && k < 60);
        if (k >= 0 && k < 60) {
            CHECK(!seen[k]);
            seen[k] = true;
        }
        CHECK_EQ(out[i].opts.qos, 1);
        CHECK_EQ(out[i].sub_id_count, 3);
    }
    for (int i = 0; i < 60; i++)
        CHECK_EQ(atomic_load(&s[i].refs), 1);
    router_free(r);
}

TEST(test_no_local)
{
    struct router *r = mk(SHARED_ROUND_ROBIN);
    struct fake a = {.cid = 7}, b = {.cid = 8};
    struct mqtt_sub_opts nl = {.qos = 1, .no_local = true};
    sub_opts(r, "t", &a, &nl, 1);
    sub_opts(r, "t", &b, &nl, 0);
    struct route out[4];
    struct route_query q = query("t");
    q.origin = 7;
    CHECK_EQ(match_q(r, &q, out, 4), 1);
    CHECK(out[0].sub == &b);
    q.origin = 0; /* no publisher id: nothing is local */
    CHECK_EQ(match_q(r, &q, out, 4), 2);
    /* no_local is per subscription: a's other subscription still delivers. */
    sub(r, "+", &a, 0, 2);
    q.origin = 7;
    CHECK_EQ(match_q(r, &q, out, 4), 2);
    struct route *ra = out[0].sub == &a ? &out[0] : &out[1];
    CHECK(ra->sub == &a);
    CHECK_EQ(ra->opts.qos, 0);
    CHECK_EQ(ra->sub_id_count, 1);
    CHECK_EQ(ra->sub_ids[0], 2);
    router_free(r);
}

TEST(test_replace_unsubscribe)
{
    struct router *r = mk(SHARED_ROUND_ROBIN);
    struct fake a = {0};
    CHECK_EQ(router_node_count(r), 1);
    CHECK_EQ(sub(r, "a/b/c", &a, 0, 1), 0);
    CHECK_EQ(sub(r, "a/b/c", &a, 2, 5), 1);
    CHECK_EQ(router_count(r), 1);
    struct route out[2];
    CHECK_EQ(match(r, "a/b/c", out, 2), 1);
    CHECK_EQ(out[0].opts.qos, 2);
    CHECK_EQ(out[0].sub_ids[0], 5);
    CHECK(unsub(r, "a/b/c", &a));
    CHECK(!unsub(r, "a/b/c", &a));
    CHECK(!unsub(r, "a/b", &a));
    CHECK(!unsub(r, "zz/y", &a));
    CHECK_EQ(router_count(r), 0);
    CHECK_EQ(router_node_count(r), 1);
    CHECK_EQ(match(r, "a/b/c", out, 2), 0);

    CHECK_EQ(sub(r, "$share/g/a/+", &a, 0, 0), 0);
    CHECK_EQ(sub(r, "$share/g/a/+", &a, 1, 0), 1);
    CHECK_EQ(sub(r, "a/+", &a, 0, 0), 0); /* plain and shared are distinct */
    CHECK_EQ(router_count(r), 2);
    CHECK(!unsub(r, "$share/h/a/+", &a));
    CHECK(unsub(r, "$share/g/a/+", &a));
    CHECK(unsub(r, "a/+", &a));
    CHECK_EQ(router_node_count(r), 1);
    router_free(r);
}

TEST(test_prune)
{
    struct router *r = mk(SHARED_ROUND_ROBIN);
    struct fake a = {0}, b = {0};
    char f[64];
    sub(r, "keep/+", &b, 0, 0);
    size_t base = router_node_count(r);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 100000; i++) {
            snprintf(f, sizeof(f), i % 3 ? "d/%d/x" : "$share/g%d/d/+/%d", i, i);
            CHECK_EQ(sub(r, f, &a, 0, 0), 0);
        }
        CHECK_EQ(router_count(r), 100001);
        CHECK(router_node_count(r) > 100000);
        CHECK(matches(r, "d/43/x", &a));
        CHECK(matches(r, "d/7/42", &a)); /* via group g42 */
        CHECK(matches(r, "keep/1", &b));
        for (int i = 0; i < 100000; i++) {
            snprintf(f, sizeof(f), i % 3 ? "d/%d/x" : "$share/g%d/d/+/%d", i, i);
            CHECK(unsub(r, f, &a));
        }
        CHECK_EQ(router_count(r), 1);
        CHECK_EQ(router_node_count(r), base);
    }
    router_free(r);
}

TEST(test_fanout_large)
{
    /* 1000 sessions on one topic (indexed lists), half leave. */
    struct router *r = mk(SHARED_ROUND_ROBIN);
    static struct fake s[1000];
    memset(s, 0, sizeof(s));
    for (int i = 0; i < 1000; i++)
        CHECK_EQ(sub(r, "news", &s[i], 0, 0), 0);
    for (int i = 0; i < 1000; i++)
        CHECK_EQ(sub(r, "news", &s[i], 1, 0), 1);
    for (int i = 0; i < 1000; i += 2)
        CHECK(unsub(r, "news", &s[i]));
    static struct route out[1000];
    CHECK_EQ(match(r, "news", out, 1000), 500);
    for (int i = 0; i < 500; i++) {
        long k = (struct fake *)out[i].sub - s;
        CHECK(k % 2 == 1);
        CHECK_EQ(out[i].opts.qos, 1);
    }
    router_free(r);
}

static int shared_pick(struct router *r, const char *t, struct fake *m, int nm,
                       struct route_query *qin)
{
    struct route out[4];
    struct route_query q = qin ? *qin : query(t);
    size_t n = match_q(r, &q, out, 4);
    if (n != 1 || out[0].group == NULL)
        return -1;
    for (int i = 0; i < nm; i++)
        if (out[0].sub == &m[i])
            return i;
    return -1;
}

TEST(test_shared_round_robin)
{
    struct router *r = mk(SHARED_ROUND_ROBIN);
    struct fake m[3] = {0};
    for (int i = 0; i < 3; i++)
        CHECK_EQ(sub(r, "$share/g/t/+", &m[i], 1, 0), 0);
    int cnt[3] = {0}, prev = -1;
    for (int i = 0; i < 300; i++) {
        int k = shared_pick(r, "t/x", m, 3, NULL);
        CHECK(k >= 0);
        if (k < 0)
            break;
        CHECK(k != prev);
        prev = k;
        cnt[k]++;
    }
    CHECK_EQ(cnt[0], 100);
    CHECK_EQ(cnt[1], 100);
    CHECK_EQ(cnt[2], 100);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(atomic_load(&m[i].refs), 100);

    /* Online members are preferred. */
    m[1].offline = true;
    for (int i = 0; i < 30; i++)
        CHECK(shared_pick(r, "t/x", m, 3, NULL) != 1);
    m[0].offline = m[2].offline = true;
    for (int i = 0; i < 6; i++)
        CHECK(shared_pick(r, "t/x", m, 3, NULL) >= 0); /* queues somewhere */
    router_free(r);
}

TEST(test_shared_random)
{
    struct router *r = mk(SHARED_RANDOM);
    struct fake m[3] = {0};
    for (int i = 0; i < 3; i++)
        sub(r, "$share/g/t", &m[i], 0, 0);
    uint64_t rng = 12345;
    int cnt[3] = {0};
    for (int i = 0; i < 300; i++) {
        struct route_query q = query("t");
        q.rng = &rng;
        int k = shared_pick(r, "t", m, 3, &q);
        CHECK(k >= 0);
        if (k >= 0)
            cnt[k]++;
    }
    CHECK(cnt[0] > 0 && cnt[1] > 0 && cnt[2] > 0);
    CHECK_EQ(cnt[0] + cnt[1] + cnt[2], 300);
    router_free(r);
}

TEST(test_shared_sticky)
{
    struct router *r = mk(SHARED_STICKY);
    struct fake m[3] = {0};
    for (int i = 0; i < 3; i++)
        sub(r, "$share/g/t", &m[i], 0, 0);
    bool seen[3] = {0};
    for (uint32_t h = 0; h < 30; h++) {
        struct route_query q = query("t");
        q.origin_hash = h * 2654435761u;
        int k = shared_pick(r, "t", m, 3, &q);
        CHECK(k >= 0);
        for (int i = 0; i < 5; i++)
            CHECK_EQ(shared_pick(r, "t", m, 3, &q), k);
        if (k >= 0)
            seen[k] = true;
    }
    CHECK(seen[0] && seen[1] && seen[2]);
    router_free(r);
}

TEST(test_shared_least_inflight)
{
    struct router *r = mk(SHARED_LEAST_INFLIGHT);
    struct fake m[3] = {{.inflight = 5}, {.inflight = 1}, {.inflight = 3}};
    for (int i = 0; i < 3; i++)
        sub(r, "$share/g/t", &m[i], 0, 0);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(shared_pick(r, "t", m, 3, NULL), 1);
    m[1].offline = true; /* online first, even with more in flight */
    for (int i = 0; i < 10; i++)
        CHECK_EQ(shared_pick(r, "t", m, 3, NULL), 2);
    m[0].offline = m[2].offline = true;
    for (int i = 0; i < 10; i++)
        CHECK_EQ(shared_pick(r, "t", m, 3, NULL), 1);
    router_free(r);
}

TEST(test_shared_busy)
{
    /* Round robin and random pass over a backed-up member while another is
     * free; when every online member is busy one of them still gets it. */
    enum shared_strategy st[2] = {SHARED_ROUND_ROBIN, SHARED_RANDOM};
    for (int k = 0; k < 2; k++) {
        struct router *r = mk(st[k]);
        struct fake m[3] = {0};
        for (int i = 0; i < 3; i++)
            sub(r, "$share/g/t", &m[i], 1, 0);
        uint64_t rng = 99;
        struct route_query q = query("t");
        q.rng = &rng;
        m[1].busy = true;
        for (int i = 0; i < 30; i++)
            CHECK(shared_pick(r, "t", m, 3, &q) != 1);
        m[0].busy = m[2].busy = true;
        int cnt[3] = {0};
        for (int i = 0; i < 30; i++) {
            int p = shared_pick(r, "t", m, 3, &q);
            CHECK(p >= 0);
            if (p >= 0)
                cnt[p]++;
        }
        CHECK_EQ(cnt[0] + cnt[1] + cnt[2], 30);
        /* An offline member is still the last choice. */
        m[0].busy = false;
        m[0].offline = true;
        for (int i = 0; i < 10; i++)
            CHECK(shared_pick(r, "t", m, 3, &q) != 0);
        router_free(r);
    }
    /* Sticky keeps its member even when it is busy. */
    struct router *r = mk(SHARED_STICKY);
    struct fake m[3] = {0};
    for (int i = 0; i < 3; i++)
        sub(r, "$share/g/t", &m[i], 0, 0);
    struct route_query q = query("t");
    q.origin_hash = 7;
    int first = shared_pick(r, "t", m, 3, &q);
    CHECK(first >= 0);
    if (first >= 0)
        m[first].busy = true;
    CHECK_EQ(shared_pick(r, "t", m, 3, &q), first);
    router_free(r);
}

TEST(test_shared_queue_and_mixed)
{
    struct router *r = mk(SHARED_ROUND_ROBIN);
    struct fake a = {0}, b = {0}, c = {0};
    CHECK_EQ(sub(r, "$queue/q/1", &a, 0, 0), 0);
    CHECK_EQ(sub(r, "$queue/q/1", &b, 0, 0), 0);
    struct route out[4];
    int cnt[2] = {0};
    for (int i = 0; i < 10; i++) {
        CHECK_EQ(match(r, "q/1", out, 4), 1);
        CHECK(out[0].group != NULL);
        cnt[out[0].sub == &b]++;
    }
    CHECK_EQ(cnt[0], 5);
    CHECK_EQ(cnt[1], 5);
    CHECK_EQ(match(r, "$queue/q/1", out, 4), 0);

    /* One session, a plain and a shared subscription: two routes. */
    sub(r, "m/#", &c, 1, 3);
    sub(r, "$share/g/m/+", &c, 2, 4);
    CHECK_EQ(match(r, "m/x", out, 4), 2);
    CHECK(out[0].sub == &c && out[1].sub == &c);
    CHECK((out[0].group == NULL) != (out[1].group == NULL));
    /* Two groups on the same filter: a route each. */
    sub(r, "$share/h/m/+", &a, 0, 0);
    CHECK_EQ(match(r, "m/x", out, 4), 3);
    router_free(r);
}

TEST(test_cap_overflow)
{
    struct router *r = mk(SHARED_ROUND_ROBIN);
    struct fake s[10] = {0};
    for (int i = 0; i < 10; i++)
        sub(r, "o", &s[i], 0, 0);
    struct route out[10];
    CHECK_EQ(match(r, "o", out, 4), 10);
    CHECK_EQ(match(r, "o", NULL, 0), 10);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(atomic_load(&s[i].refs), 0);
    CHECK_EQ(match(r, "o", out, 10), 10);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(atomic_load(&s[i].refs), 1);
    /* Overlapping duplicates may overcount; a retry with that size fits. */
    for (int i = 0; i < 10; i++)
        sub(r, "+", &s[i], 0, 0);
    size_t need = match(r, "o", out, 4);
    CHECK(need > 4 && need <= 20);
    struct route big[20];
    CHECK_EQ(match(r, "o", big, need), 10);
    router_free(r);
}

TEST(test_group_pick)
{
    struct router *r = mk(SHARED_ROUND_ROBIN);
    struct fake a = {0}, b = {0};
    sub(r, "$share/g/t", &a, 0, 0);
    sub(r, "$share/g/t", &b, 0, 0);
    struct route out[2];
    CHECK_EQ(match(r, "t", out, 2), 1);
    const void *g = out[0].group;
    CHECK(g != NULL);
    for (int i = 0; i < 10; i++) {
        CHECK(router_group_pick(r, g, &a, 0, NULL) == &b);
        CHECK(router_group_pick(r, g, &b, 0, NULL) == &a);
    }
    /* The same exclusion through a query. */
    struct route_query q = query("t");
    q.exclude_group = g;
    q.exclude_sub = &a;
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(match_q(r, &q, out, 2), 1);
        CHECK(out[0].sub == &b);
    }
    unsub(r, "$share/g/t", &b);
    CHECK(router_group_pick(r, g, &a, 0, NULL) == NULL); /* nobody else */
    CHECK_EQ(match_q(r, &q, out, 2), 0);
    CHECK(router_group_pick(r, g, &b, 0, NULL) == &a);
    unsub(r, "$share/g/t", &a);
    CHECK(router_group_pick(r, g, NULL, 0, NULL) == NULL); /* group gone */
    router_free(r);
}

/* Differential test against topic_matches over random filters and topics,
 * with enough distinct levels to push nodes into hash-table mode. */
static void rand_path(char *buf, size_t cap, uint64_t *s, bool filter)
{
    static const char *lv[] = {"a", "b", "c", "$x", "", "long-level-name-xyz"};
    size_t n = 0;
    int levels = 1 + (int)(*s % 4);
    for (int i = 0; i < levels; i++) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        const char *l;
        char num[16];
        int k = (int)(*s % 10);
        if (filter && k == 0)
            l = "+";
        else if (filter && k == 1 && i == levels - 1)
            l = "#";
        else if (k < 4) {
            snprintf(num, sizeof(num), "n%d", (int)((*s >> 20) % 40));
            l = num;
        } else {
            l = lv[(*s >> 8) % 6];
        }
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? "/" : "", l);
    }
}

TEST(test_random_differential)
{
    struct router *r = mk(SHARED_ROUND_ROBIN);
    enum { NF = 600, NT = 400 };
    static char filters[NF][128];
    static struct fake subs[NF];
    static bool live[NF];
    memset(subs, 0, sizeof(subs));
    memset(live, 0, sizeof(live));
    uint64_t s = 88172645463325252ULL;
    for (int i = 0; i < NF; i++) {
        rand_path(filters[i], 128, &s, true);
        live[i] = sub(r, filters[i], &subs[i], 0, 0) == 0;
        CHECK(live[i]);
    }
    for (int i = 0; i < NF; i += 3) { /* remove a third: exercises deletion */
        CHECK(unsub(r, filters[i], &subs[i]));
        live[i] = false;
    }
    static struct route out[NF];
    int mismatches = 0;
    for (int t = 0; t < NT; t++) {
        char topic[128];
        rand_path(topic, sizeof(topic), &s, false);
        size_t n = match(r, topic, out, NF);
        static bool got[NF];
        memset(got, 0, sizeof(got));
        for (size_t i = 0; i < n; i++)
            got[(struct fake *)out[i].sub - subs] = true;
        size_t want = 0;
        for (int i = 0; i < NF; i++) {
            bool m = live[i] && topic_matches((const uint8_t *)filters[i], strlen(filters[i]),
                                              (const uint8_t *)topic, strlen(topic));
            want += m;
            if (m != got[i] && mismatches++ < 5)
                fprintf(stderr, "mismatch: filter '%s' topic '%s' want %d\n", filters[i],
                        topic, m);
        }
        CHECK_EQ(n, want);
    }
    CHECK_EQ(mismatches, 0);
    router_free(r);
}

/* Readers match while a writer churns subscriptions. */
struct mt_ctx {
    struct router *r;
    atomic_bool stop;
    struct fake stable;
    atomic_long matches, bad;
};

static void *mt_reader(void *arg)
{
    static atomic_int next_slot = 1;
    struct mt_ctx *c = arg;
    router_set_thread_slot(atomic_fetch_add(&next_slot, 1));
    struct route out[64];
    char topic[32];
    unsigned i = 0;
    while (!atomic_load(&c->stop)) {
        snprintf(topic, sizeof(topic), "s/%u/x", i++ % 200);
        struct route_query q = query(topic);
        size_t n = router_match(c->r, &q, out, 64);
        bool stable = false;
        for (size_t k = 0; k < n && k < 64; k++)
            stable |= out[k].sub == &c->stable;
        if (n == 0 || n > 64 || !stable)
            atomic_fetch_add(&c->bad, 1);
        atomic_fetch_add(&c->matches, 1);
    }
    return NULL;
}

TEST(test_concurrent)
{
    struct mt_ctx c = {.r = mk(SHARED_ROUND_ROBIN)};
    memset(&c.stable, 0, sizeof(c.stable));
    sub(c.r, "s/+/x", &c.stable, 0, 0);
    static struct fake w[8];
    memset(w, 0, sizeof(w));
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, mt_reader, &c);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char f[32];
    unsigned i = 0;
    long writes = 0;
    do {
        snprintf(f, sizeof(f), i % 2 ? "s/%u/x" : "$share/g/s/%u/#", i % 200);
        sub(c.r, f, &w[i % 8], 0, 0);
        snprintf(f, sizeof(f), (i + 100) % 2 ? "s/%u/x" : "$share/g/s/%u/#", (i + 100) % 200);
        unsub(c.r, f, &w[(i + 100) % 8]);
        i++;
        writes++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
    } while ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 500000000L);
    atomic_store(&c.stop, true);
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    CHECK(atomic_load(&c.matches) > 0);
    CHECK(writes > 0);
    CHECK_EQ(atomic_load(&c.bad), 0);
    router_free(c.r);
}

int main(void)
{
    RUN(test_exact);
    RUN(test_plus);
    RUN(test_hash);
    RUN(test_dollar);
    RUN(test_merge);
    RUN(test_merge_many);
    RUN(test_no_local);
    RUN(test_replace_unsubscribe);
    RUN(test_prune);
    RUN(test_fanout_large);
    RUN(test_shared_round_robin);
    RUN(test_shared_random);
    RUN(test_shared_sticky);
    RUN(test_shared_least_inflight);
    RUN(test_shared_busy);
    RUN(test_shared_queue_and_mixed);
    RUN(test_cap_overflow);
    RUN(test_group_pick);
    RUN(test_random_differential);
    RUN(test_concurrent);
    return test_report();
}
