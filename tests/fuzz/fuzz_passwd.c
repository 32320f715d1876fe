/* fuzz_passwd.c - libFuzzer target for the password file parser
 * (passwd_parse). (No password check: an entry may ask for ten million
 * PBKDF2 iterations, which is allowed and slow.) */
#include <stddef.h>
#include <stdint.h>

#include "auth/passwd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct passwd_db *db = passwd_parse((const char *)data, size, NULL, NULL);
    (void)passwd_count(db);
    passwd_free(db);
    return 0;
}
