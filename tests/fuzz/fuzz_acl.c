/* fuzz_acl.c - libFuzzer target for the ACL file parser (acl_parse), then
 * the rules of two clients and a few checks against them. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "auth/acl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    struct acl *a = acl_parse((const char *)data, size, err, sizeof(err));
    if (!a)
        return 0;
    static const char *topics[] = {"a/b", "alice/x", "$SYS/x", "c/dev/+", "#"};
    struct acl_rules *r[2] = {
        acl_rules_for(a, (const uint8_t *)"alice", 5, true, (const uint8_t *)"dev", 3),
        acl_rules_for(a, (const uint8_t *)"", 0, false, (const uint8_t *)"x/y", 3),
    };
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; r[k] && i < sizeof(topics) / sizeof(topics[0]); i++) {
            (void)acl_allows(r[k], (const uint8_t *)topics[i], strlen(topics[i]), ACL_READ);
            (void)acl_allows(r[k], (const uint8_t *)topics[i], strlen(topics[i]), ACL_WRITE);
        }
        acl_rules_free(r[k]);
    }
    acl_free(a);
    return 0;
}
