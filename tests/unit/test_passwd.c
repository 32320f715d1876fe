/* test_passwd.c - password files (src/auth/passwd.c): both hash kinds
 * verify, a vector from mosquitto_passwd's format checks out, bad lines are
 * left out with their line numbers, and the later of two lines for a user
 * wins. */
#include "auth/passwd.h"

#include <stdio.h>
#include <string.h>

#include "test.h"

static int warnings;
static int last_warned_line;

static void count_warning(void *arg, int line, const char *msg)
{
    (void)arg;
    (void)msg;
    warnings++;
    last_warned_line = line;
}

static bool check(const struct passwd_db *db, const char *user, const char *pw)
{
    return passwd_check(db, (const uint8_t *)user, strlen(user), (const uint8_t *)pw, strlen(pw));
}

TEST(test_hash_and_check_both_kinds)
{
    char h6[256], h7[256], text[1024];
    CHECK(passwd_hash(PASSWD_SHA512, 0, "secret", h6, sizeof(h6)) > 0);
    CHECK(passwd_hash(PASSWD_PBKDF2, 1000, "s3cr:et", h7, sizeof(h7)) > 0);
    CHECK(!strncmp(h6, "$6$", 3));
    CHECK(!strncmp(h7, "$7$1000$", 8));
    snprintf(text, sizeof(text), "# users\n\nalice:%s\r\nbob:%s\n", h6, h7);
    warnings = 0;
    struct passwd_db *db = passwd_parse(text, strlen(text), count_warning, NULL);
    CHECK(db != NULL);
    CHECK_EQ(passwd_count(db), 2);
    CHECK_EQ(warnings, 0);
    CHECK(check(db, "alice", "secret"));
    CHECK(!check(db, "alice", "secreT"));
    CHECK(!check(db, "alice", ""));
    CHECK(check(db, "bob", "s3cr:et"));
    CHECK(!check(db, "bob", "secret"));
    CHECK(!check(db, "carol", "secret"));
    CHECK(!check(db, "alic", "secret"));
    passwd_free(db);
}

TEST(test_known_vector)
{
    /* "alice"/"secret1", PBKDF2-SHA512 with 101 iterations, as written by
     * mosquitto_passwd 2.0. */
    const char *text = "alice:$7$101$JUQGLnrPI5pYROzL$llsOgXLAafgNZjNzrhZjfzD1AFAvchdRET0aajk"
                       "AS5vcZNXPQxQbVFsON58HjwXNst0VGhAFbi4xmyUfnV4gIQ==\n"
                       "bob:$6$X4fu1O0+TIJhIzHJ$ebteKJJiQkgLxPMZ64+/5xDOkHVfoemGRTi4rVJPz9/Do8K"
                       "ekBlMAZwoijG++4TqoAjmVshl/OUNJ8yFSiKPEg==\n";
    struct passwd_db *db = passwd_parse(text, strlen(text), NULL, NULL);
    CHECK_EQ(passwd_count(db), 2);
    CHECK(check(db, "alice", "secret1"));
    CHECK(check(db, "bob", "secret2"));
    CHECK(!check(db, "bob", "secret1"));
    passwd_free(db);
}

TEST(test_bad_lines_left_out)
{
    const char *bad[] = {
        "plain:text", ":$6$AAAAAAAAAAAAAAAA$AAAA", "nocolon", "x:$7$$AAAA$AAAA",
        "x:$7$0$AAAAAAAAAAAAAAAA$AAAA", "x:$7$99999999999$AAAAAAAAAAAAAAAA$AAAA",
        "x:$6$!!!!$AAAA", "x:$6$AAAAAAAAAAAAAAAA$short", "x:$6$AAAAAAAAAAAAAAAA",
        "x:$8$AAAAAAAAAAAAAAAA$AAAA", "x:$6$A=AA$AAAA",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "# first\n%s\n", bad[i]);
        warnings = 0;
        last_warned_line = -1;
        struct passwd_db *db = passwd_parse(text, strlen(text), count_warning, NULL);
        CHECK(db != NULL);
        CHECK_EQ(passwd_count(db), 0);
        CHECK_EQ(warnings, 1);
        CHECK_EQ(last_warned_line, 2);
        passwd_free(db);
    }
}

TEST(test_later_line_wins)
{
    char h1[256], h2[256], text[1024];
    CHECK(passwd_hash(PASSWD_PBKDF2, 10, "first", h1, sizeof(h1)) > 0);
    CHECK(passwd_hash(PASSWD_PBKDF2, 10, "second", h2, sizeof(h2)) > 0);
    snprintf(text, sizeof(text), "u:%s\nv:%s\nu:%s\n", h1, h1, h2);
    struct passwd_db *db = passwd_parse(text, strlen(text), NULL, NULL);
    CHECK_EQ(passwd_count(db), 2);
    CHECK(check(db, "u", "second"));
    CHECK(!check(db, "u", "first"));
    CHECK(check(db, "v", "first"));
    passwd_free(db);
}

int main(void)
{
    RUN(test_hash_and_check_both_kinds);
    RUN(test_known_vector);
    RUN(test_bad_lines_left_out);
    RUN(test_later_line_wins);
    return test_report();
}
