/* test_acl.c - ACL files (src/auth/acl.c): who gets which rules, deny
 * wins, patterns are filled in (and left out when they cannot be), and a
 * file with an error is refused with its line number. */
#include "auth/acl.h"

#include <string.h>

#include "test.h"

static const char *text =
    "# anonymous\n"
    "  topic read public/#\n"
    "topic $SYS/broker/#\n"
    "user alice\n"
    "topic readwrite alice/#\n"
    "topic deny alice/secret\n"
    "topic write in/+\n"
    "pattern readwrite c/%c/#\n"
    "pattern read u/%u/%c\n";

static struct acl_rules *rules(const struct acl *a, const char *user, const char *cid)
{
    return acl_rules_for(a, (const uint8_t *)(user ? user : ""), user ? strlen(user) : 0,
                         user != NULL, (const uint8_t *)cid, strlen(cid));
}

static bool may(const struct acl_rules *r, const char *topic, int access)
{
    return acl_allows(r, (const uint8_t *)topic, strlen(topic), access);
}

TEST(test_rules_by_client)
{
    char err[256];
    struct acl *a = acl_parse(text, strlen(text), err, sizeof(err));
    CHECK(a != NULL);
    CHECK_EQ(acl_rule_count(a), 7);
    struct acl_rules *anon = rules(a, NULL, "dev");
    CHECK(may(anon, "public/x", ACL_READ));
    CHECK(!may(anon, "public/x", ACL_WRITE));
    CHECK(may(anon, "$SYS/broker/uptime", ACL_READ | ACL_WRITE));
    CHECK(!may(anon, "alice/x", ACL_READ));
    CHECK(may(anon, "c/dev/x", ACL_WRITE));
    CHECK(!may(anon, "c/other/x", ACL_WRITE));
    CHECK(!may(anon, "u/x/dev", ACL_READ)); /* %u without a username */
    acl_rules_free(anon);
    struct acl_rules *al = rules(a, "alice", "phone");
    CHECK(may(al, "alice/x", ACL_READ));
    CHECK(may(al, "alice/x", ACL_WRITE));
    CHECK(!may(al, "alice/secret", ACL_READ));  /* deny wins */
    CHECK(!may(al, "alice/secret", ACL_WRITE));
    CHECK(may(al, "alice/+", ACL_READ));        /* a filter inside alice/# */
    CHECK(may(al, "in/a", ACL_WRITE));
    CHECK(!may(al, "in/a", ACL_READ));
    CHECK(!may(al, "in/a/b", ACL_WRITE));
    CHECK(!may(al, "public/x", ACL_READ));      /* not the anonymous rules */
    CHECK(may(al, "u/alice/phone", ACL_READ));
    CHECK(!may(al, "u/alice/tablet", ACL_READ));
    acl_rules_free(al);
    struct acl_rules *odd = rules(a, "x/y", "a#");
    CHECK(!may(odd, "c/a#/z", ACL_WRITE));
    CHECK(!may(odd, "u/x/y/a#", ACL_READ));
    acl_rules_free(odd);
    acl_free(a);
}

TEST(test_deny_pattern_that_cannot_apply_denies_all)
{
    const char *t = "topic readwrite #\npattern deny dev/%c/firmware\n";
    char err[256];
    struct acl *a = acl_parse(t, strlen(t), err, sizeof(err));
    CHECK(a != NULL);
    struct acl_rules *ok = rules(a, NULL, "x");
    CHECK(may(ok, "dev/y/firmware", ACL_WRITE));
    CHECK(!may(ok, "dev/x/firmware", ACL_WRITE));
    acl_rules_free(ok);
    /* "x/y" would be written dev/x/y/firmware: not filled in, so denied. */
    struct acl_rules *slash = rules(a, NULL, "x/y");
    CHECK(!may(slash, "dev/x/y/firmware", ACL_WRITE));
    CHECK(!may(slash, "other", ACL_READ));
    acl_rules_free(slash);
    acl_free(a);
}

TEST(test_errors_name_the_line)
{
    const char *bad[][2] = {
        {"topic read a\nuser\n", "line 2"},
        {"topic read a\n\nfoo bar\n", "line 3: unknown keyword 'foo'"},
        {"topic read a/#/b\n", "line 1: invalid topic"},
        {"topic read\n", "line 1: invalid topic"},
        {"pattern deny\n", "line 1: invalid topic"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        CHECK(acl_parse(bad[i][0], strlen(bad[i][0]), err, sizeof(err)) == NULL);
        CHECK(strstr(err, bad[i][1]) != NULL);
    }
    /* No access word: readwrite, and the topic may hold spaces. */
    char err[256];
    const char *t = "topic a b/c\n";
    struct acl *a = acl_parse(t, strlen(t), err, sizeof(err));
    CHECK(a != NULL);
    struct acl_rules *r = rules(a, NULL, "x");
    CHECK(may(r, "a b/c", ACL_READ) && may(r, "a b/c", ACL_WRITE));
    acl_rules_free(r);
    acl_free(a);
}

int main(void)
{
    RUN(test_rules_by_client);
    RUN(test_errors_name_the_line);
    RUN(test_deny_pattern_that_cannot_apply_denies_all);
    return test_report();
}
