/* test_topic.c - topic names, topic filters, matching and shared
 * subscriptions (src/mqtt/topic.c; MQTT 5 section 4.7). */
#include "test.h"

#include "mqtt/topic.h"

#define U(s) (const uint8_t *)(s), strlen(s)

static bool name_ok(const char *s) { return topic_name_valid(U(s)); }
static bool filter_ok(const char *s) { return topic_filter_valid(U(s)); }
static bool match(const char *f, const char *t) { return topic_matches(U(f), U(t)); }

TEST(topic_name_rules)
{
    CHECK(name_ok("a"));
    CHECK(name_ok("a/b/c"));
    CHECK(name_ok("/"));
    CHECK(name_ok("a//b"));
    CHECK(name_ok("$SYS/x"));
    CHECK(name_ok("caf\xc3\xa9"));
    CHECK(!name_ok(""));          /* [MQTT-4.7.3-1] at least one character */
    CHECK(!name_ok("a/+"));       /* [MQTT-3.3.2-2] no wildcards */
    CHECK(!name_ok("a/#"));
    CHECK(!name_ok("a+b"));
    CHECK(!topic_name_valid((const uint8_t *)"a\0b", 3)); /* [MQTT-4.7.3-2] U+0000 */
    CHECK(!name_ok("\xc0\x80"));  /* overlong encoding */
    CHECK(!name_ok("\xed\xa0\x80")); /* UTF-16 surrogate */
    CHECK(!name_ok("\xff"));
}

TEST(topic_name_length_limit)
{
    static uint8_t big[65536];
    memset(big, 'a', sizeof(big));
    CHECK(topic_name_valid(big, 65535));
    CHECK(!topic_name_valid(big, 65536));
}

TEST(topic_filter_rules)
{
    CHECK(filter_ok("#"));
    CHECK(filter_ok("+"));
    CHECK(filter_ok("a/+/c"));
    CHECK(filter_ok("+/+"));
    CHECK(filter_ok("a/#"));
    CHECK(filter_ok("/+"));
    CHECK(filter_ok("a//#"));
    CHECK(!filter_ok(""));
    CHECK(!filter_ok("a/#/b"));   /* [MQTT-4.7.1-1] # last */
    CHECK(!filter_ok("a#"));      /* # is a whole level */
    CHECK(!filter_ok("a/b#"));
    CHECK(!filter_ok("a+"));      /* [MQTT-4.7.1-2] + is a whole level */
    CHECK(!filter_ok("+a/b"));
    CHECK(!filter_ok("a/+b"));
    CHECK(!filter_ok("##"));
    CHECK(!filter_ok("\xc0\x80"));
}

TEST(shared_subscription_filters)
{
    CHECK(filter_ok("$share/g/a/b"));
    CHECK(filter_ok("$share/g/#"));
    CHECK(filter_ok("$share/g/+/x"));
    CHECK(filter_ok("$queue/a/b"));
    CHECK(!filter_ok("$share/g"));      /* no filter */
    CHECK(!filter_ok("$share//a"));     /* empty group */
    CHECK(!filter_ok("$share/g+/a"));   /* wildcard in group */
    CHECK(!filter_ok("$share/g#/a"));
    CHECK(!filter_ok("$share/g/a/#/b"));
    CHECK(filter_ok("$share"));         /* just a topic named $share */

    const uint8_t *g, *f;
    size_t glen, flen;
    CHECK(topic_shared_split(U("$share/grp/a/+"), &g, &glen, &f, &flen));
    CHECK_EQ(glen, 3);
    CHECK_MEM(g, "grp", 3);
    CHECK_EQ(flen, 3);
    CHECK_MEM(f, "a/+", 3);
    CHECK(topic_shared_split(U("$queue/x/y"), &g, &glen, &f, &flen));
    CHECK_EQ(flen, 3);
    CHECK_MEM(f, "x/y", 3);
    CHECK(!topic_shared_split(U("a/b"), &g, &glen, &f, &flen));
    CHECK(!topic_shared_split(U("$share/g"), &g, &glen, &f, &flen));
}

TEST(matching_exact_and_single_level)
{
    CHECK(match("a/b", "a/b"));
    CHECK(!match("a/b", "a/c"));
    CHECK(!match("a/b", "a/b/c"));
    CHECK(!match("a/b/c", "a/b"));
    CHECK(match("a/+", "a/b"));
    CHECK(!match("a/+", "a/b/c"));
    CHECK(match("a/+", "a/"));        /* an empty level is a level */
    CHECK(match("+/+", "/x"));
    CHECK(match("a/+/c", "a//c"));
    CHECK(match("+", "a"));
    CHECK(!match("+", "a/b"));
    CHECK(match("/+", "/a"));
}

TEST(matching_multi_level)
{
    CHECK(match("#", "a"));
    CHECK(match("#", "a/b/c"));
    CHECK(match("#", "/"));
    CHECK(match("a/#", "a"));         /* # includes the parent level */
    CHECK(match("a/#", "a/b"));
    CHECK(match("a/#", "a/b/c"));
    CHECK(!match("a/#", "b/a"));
    CHECK(!match("a/b/#", "a"));
    CHECK(match("+/#", "a"));
    CHECK(match("a/+/#", "a/b"));
}

TEST(matching_dollar_topics)
{
    /* [MQTT-4.7.2-1]: leading wildcards do not match $ topics. */
    CHECK(!match("#", "$SYS/broker"));
    CHECK(!match("+/broker", "$SYS/broker"));
    CHECK(!match("+", "$SYS"));
    CHECK(match("$SYS/#", "$SYS/broker/uptime"));
    CHECK(match("$SYS/+/uptime", "$SYS/broker/uptime"));
    CHECK(match("a/#", "a/$b"));      /* only the first level is special */
}

TEST(wildcard_detection)
{
    CHECK(topic_has_wildcard(U("a/+")));
    CHECK(topic_has_wildcard(U("#")));
    CHECK(!topic_has_wildcard(U("a/b")));
}

int main(void)
{
    RUN(topic_name_rules);
    RUN(topic_name_length_limit);
    RUN(topic_filter_rules);
    RUN(shared_subscription_filters);
    RUN(matching_exact_and_single_level);
    RUN(matching_multi_level);
    RUN(matching_dollar_topics);
    RUN(wildcard_detection);
    return test_report();
}
