/* test.h - the smallest unit test harness that does the job.
 *
 * TEST(name) { ... CHECK(cond); CHECK_EQ(a, b); ... }
 * int main(void) { RUN(name); ...; return test_report(); }
 * Prints one line per failed check and "N passed, N failed" at the end.
 */
#ifndef PETREL_TEST_H
#define PETREL_TEST_H

#include <stdio.h>
#include <string.h>

static int test_checks_failed, tests_passed, tests_failed, test_current_failed;

#define TEST(name) static void name(void)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            test_checks_failed++;                                                \
            test_current_failed = 1;                                             \
        }                                                                        \
    } while (0)

#define CHECK_EQ(a, b)                                                           \
    do {                                                                         \
        long long va_ = (long long)(a), vb_ = (long long)(b);                    \
        if (va_ != vb_) {                                                        \
            fprintf(stderr, "%s:%d: CHECK_EQ(%s, %s) failed: %lld != %lld\n",    \
                    __FILE__, __LINE__, #a, #b, va_, vb_);                       \
            test_checks_failed++;                                                \
            test_current_failed = 1;                                             \
        }                                                                        \
    } while (0)

#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)
#define CHECK_STR(a, b) CHECK(strcmp((a), (b)) == 0)

#define RUN(name)                                                                \
    do {                                                                         \
        test_current_failed = 0;                                                 \
        name();                                                                  \
        if (test_current_failed) {                                               \
            tests_failed++;                                                      \
            fprintf(stderr, "FAIL %s\n", #name);                                 \
        } else {                                                                 \
            tests_passed++;                                                      \
        }                                                                        \
    } while (0)

static inline int test_report(void)
{
    printf("%d passed, %d failed\n", tests_passed, tests_failed);
    return tests_failed ? 1 : 0;
}

#endif
