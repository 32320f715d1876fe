/* test_retain.c - retained-message store: set/replace/clear, wildcard
 * lookups, the '$' rule, expiry, and reference counting. */
#include "broker/retain.h"

#include <stdlib.h>

#include "broker/message.h"
#include "mqtt/topic.h"
#include "test.h"

static struct message *msg(const char *topic, const char *payload, uint64_t expiry)
{
    struct message *m = message_new((const uint8_t *)topic, strlen(topic),
                                    (const uint8_t *)payload, strlen(payload), NULL, 0, 1,
                                    true, expiry, 0, 0);
    CHECK(m != NULL);
    return m;
}

/* Set and drop our own reference: the store keeps the only one. */
static void put(struct retain_store *rs, const char *topic, const char *payload)
{
    struct message *m = msg(topic, payload, 0);
    retain_set(rs, m);
    message_unref(m);
}

struct got {
    int n;
    char topics[64][64];
};

static void collect(void *arg, struct message *m)
{
    struct got *g = arg;
    if (g->n < 64)
        snprintf(g->topics[g->n], 64, "%s", m->topic);
    g->n++;
    message_unref(m);
}

static bool has(const struct got *g, const char *topic)
{
    for (int i = 0; i < g->n && i < 64; i++)
        if (strcmp(g->topics[i], topic) == 0)
            return true;
    return false;
}

static struct got find(struct retain_store *rs, const char *filter, uint64_t now)
{
    struct got g = {0};
    size_t n = retain_match(rs, (const uint8_t *)filter, strlen(filter), now, collect, &g);
    CHECK_EQ(n, g.n);
    return g;
}

static void drop_ref(void *arg, struct message *m)
{
    (*(size_t *)arg)++;
    message_unref(m);
}

TEST(test_set_replace_clear)
{
    struct retain_store *rs = retain_new();
    CHECK(rs != NULL);
    CHECK_EQ(retain_node_count(rs), 1);
    struct message *m1 = msg("a/b", "one", 0), *m2 = msg("a/b", "two", 0);
    retain_set(rs, m1);
    CHECK_EQ(atomic_load(&m1->refs), 2);
    CHECK_EQ(retain_count(rs), 1);
    retain_set(rs, m2);
    CHECK_EQ(retain_count(rs), 1);
    CHECK_EQ(atomic_load(&m1->refs), 1); /* the store let go of it */
    CHECK_EQ(atomic_load(&m2->refs), 2);

    struct got g = find(rs, "a/b", 0);
    CHECK_EQ(g.n, 1);
    CHECK_EQ(atomic_load(&m2->refs), 2); /* the callee's reference was dropped */

    struct message *clr = msg("a/b", "", 0);
    retain_set(rs, clr);
    CHECK_EQ(atomic_load(&clr->refs), 1); /* an empty message is never stored */
    CHECK_EQ(retain_count(rs), 0);
    CHECK_EQ(atomic_load(&m2->refs), 1);
    CHECK_EQ(retain_node_count(rs), 1);
    CHECK_EQ(find(rs, "a/b", 0).n, 0);
    retain_set(rs, clr); /* clearing nothing is fine */
    CHECK_EQ(retain_count(rs), 0);

    /* Clearing a parent keeps the child's branch. */
    put(rs, "x", "p");
    put(rs, "x/y", "c");
    put(rs, "x", "");
    CHECK_EQ(retain_count(rs), 1);
    CHECK_EQ(retain_node_count(rs), 3);
    CHECK_EQ(find(rs, "x/y", 0).n, 1);
    CHECK_EQ(find(rs, "x", 0).n, 0);
    put(rs, "x/y", "");
    CHECK_EQ(retain_node_count(rs), 1);

    message_unref(m1);
    message_unref(m2);
    message_unref(clr);
    retain_free(rs);
}

TEST(test_wildcards)
{
    struct retain_store *rs = retain_new();
    static const char *topics[] = {"a", "a/b", "a/c", "a/b/c", "b/x", "$SYS/x", "/y", "a/"};
    for (size_t i = 0; i < sizeof(topics) / sizeof(*topics); i++)
        put(rs, topics[i], "v");
    CHECK_EQ(retain_count(rs), 8);

    struct got g = find(rs, "#", 0);
    CHECK_EQ(g.n, 7);
    CHECK(!has(&g, "$SYS/x"));

    g = find(rs, "a/#", 0);
    CHECK_EQ(g.n, 5);
    CHECK(has(&g, "a") && has(&g, "a/b") && has(&g, "a/c") && has(&g, "a/b/c") && has(&g, "a/"));

    g = find(rs, "a/+", 0);
    CHECK_EQ(g.n, 3);
    CHECK(has(&g, "a/b") && has(&g, "a/c") && has(&g, "a/"));

    g = find(rs, "+", 0);
    CHECK_EQ(g.n, 1);
    CHECK(has(&g, "a"));

    g = find(rs, "+/x", 0);
    CHECK_EQ(g.n, 1);
    CHECK(has(&g, "b/x"));

    g = find(rs, "+/+", 0);
    CHECK_EQ(g.n, 5); /* a/b a/c b/x /y a/ */

    g = find(rs, "$SYS/#", 0);
    CHECK_EQ(g.n, 1);
    g = find(rs, "$SYS/+", 0);
    CHECK_EQ(g.n, 1);
    g = find(rs, "a/b/c/#", 0);
    CHECK_EQ(g.n, 1);
    g = find(rs, "+/b/+", 0);
    CHECK_EQ(g.n, 1);
    g = find(rs, "+/+/+/+", 0);
    CHECK_EQ(g.n, 0);
    g = find(rs, "nope/#", 0);
    CHECK_EQ(g.n, 0);
    retain_free(rs);
}

TEST(test_expiry)
{
    struct retain_store *rs = retain_new();
    struct message *m = msg("e/1", "x", 1000);
    retain_set(rs, m);
    put(rs, "e/2", "y");
    CHECK_EQ(find(rs, "e/+", 999).n, 2);
    CHECK_EQ(atomic_load(&m->refs), 2);
    struct got g = find(rs, "e/+", 1000);
    CHECK_EQ(g.n, 1);
    CHECK(has(&g, "e/2"));
    CHECK_EQ(retain_count(rs), 1); /* removed, not just skipped */
    CHECK_EQ(atomic_load(&m->refs), 1);
    CHECK_EQ(retain_node_count(rs), 3);
    message_unref(m);
    retain_free(rs);
}

TEST(test_many_and_deep)
{
    struct retain_store *rs = retain_new();
    char t[64];
    for (int i = 0; i < 100000; i++) {
        snprintf(t, sizeof(t), "dev/%d/temp", i);
        put(rs, t, "21");
    }
    CHECK_EQ(retain_count(rs), 100000);
    size_t n = 0;
    CHECK_EQ(retain_match(rs, (const uint8_t *)"dev/+/temp", 10, 0, drop_ref, &n), 100000);
    CHECK_EQ(n, 100000);
    n = 0;
    CHECK_EQ(retain_match(rs, (const uint8_t *)"dev/777/temp", 12, 0, drop_ref, &n), 1);
    n = 0;
    CHECK_EQ(retain_match(rs, (const uint8_t *)"dev/777/+", 9, 0, drop_ref, &n), 1);
    for (int i = 0; i < 100000; i += 2) {
        snprintf(t, sizeof(t), "dev/%d/temp", i);
        put(rs, t, "");
    }
    n = 0;
    CHECK_EQ(retain_match(rs, (const uint8_t *)"#", 1, 0, drop_ref, &n), 50000);
    for (int i = 1; i < 100000; i += 2) {
        snprintf(t, sizeof(t), "dev/%d/temp", i);
        put(rs, t, "");
    }
    CHECK_EQ(retain_count(rs), 0);
    CHECK_EQ(retain_node_count(rs), 1);

    /* 20,000 levels: walks must not recurse. */
    size_t len = 40000 - 1;
    char *deep = malloc(len + 1);
    CHECK(deep != NULL);
    for (size_t i = 0; i < len; i++)
        deep[i] = i % 2 ? '/' : 'a';
    deep[len] = '\0';
    put(rs, deep, "deep");
    n = 0;
    CHECK_EQ(retain_match(rs, (const uint8_t *)"#", 1, 0, drop_ref, &n), 1);
    n = 0;
    CHECK_EQ(retain_match(rs, (const uint8_t *)deep, len, 0, drop_ref, &n), 1);
    deep[len - 1] = '+';
    n = 0;
    CHECK_EQ(retain_match(rs, (const uint8_t *)deep, len, 0, drop_ref, &n), 1);
    deep[len - 1] = 'a';
    put(rs, "a/a", "short"); /* stays after retain_free of the deep branch */
    free(deep);
    retain_free(rs);
}

static void rand_path(char *buf, size_t cap, uint64_t *s, bool filter)
{
    static const char *lv[] = {"a", "b", "", "$x", "c"};
    size_t n = 0;
    int levels = 1 + (int)(*s % 4);
    for (int i = 0; i < levels; i++) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        char num[16];
        const char *l;
        int k = (int)(*s % 10);
        if (filter && k == 0)
            l = "+";
        else if (filter && k == 1 && i == levels - 1)
            l = "#";
        else if (k < 5) {
            snprintf(num, sizeof(num), "n%d", (int)((*s >> 20) % 30));
            l = num;
        } else {
            l = lv[(*s >> 8) % 5];
        }
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? "/" : "", l);
    }
}

struct count_ctx {
    char (*topics)[64];
    int nt;
    int *hits;
};

static void count_hit(void *arg, struct message *m)
{
    struct count_ctx *c = arg;
    for (int i = 0; i < c->nt; i++)
        if (strcmp(c->topics[i], m->topic) == 0)
            c->hits[i]++;
    message_unref(m);
}

TEST(test_random_differential)
{
    enum { NT = 500, NF = 300 };
    static char topics[NT][64];
    static bool live[NT];
    static int hits[NT];
    struct retain_store *rs = retain_new();
    uint64_t s = 0x2545F4914F6CDD1DULL;
    for (int i = 0; i < NT; i++) {
        rand_path(topics[i], 64, &s, false);
        live[i] = topics[i][0] != '\0'; /* "" is not a valid topic */
        for (int j = 0; j < i; j++)
            if (strcmp(topics[j], topics[i]) == 0)
                live[i] = false; /* duplicates: keep the first only */
        if (live[i])
            put(rs, topics[i], "v");
    }
    for (int i = 0; i < NT; i += 4) {
        if (live[i]) {
            put(rs, topics[i], "");
            live[i] = false;
        }
    }
    struct count_ctx c = {topics, NT, hits};
    int bad = 0;
    for (int f = 0; f < NF; f++) {
        char filter[64];
        rand_path(filter, sizeof(filter), &s, true);
        if (!filter[0])
            continue; /* not a valid filter */
        memset(hits, 0, sizeof(hits));
        retain_match(rs, (const uint8_t *)filter, strlen(filter), 0, count_hit, &c);
        for (int i = 0; i < NT; i++) {
            bool want = live[i] && topic_matches((const uint8_t *)filter, strlen(filter),
                                                 (const uint8_t *)topics[i], strlen(topics[i]));
            int have = 0;
            if (live[i])
                have = hits[i];
            else
                continue;
            if (have != (int)want && bad++ < 5)
                fprintf(stderr, "mismatch: filter '%s' topic '%s' want %d got %d\n", filter,
                        topics[i], want, have);
        }
    }
    CHECK_EQ(bad, 0);
    retain_free(rs);
}

int main(void)
{
    RUN(test_set_replace_clear);
    RUN(test_wildcards);
    RUN(test_expiry);
    RUN(test_many_and_deep);
    RUN(test_random_differential);
    return test_report();
}
