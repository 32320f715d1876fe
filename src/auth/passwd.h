/* passwd.h - password files in mosquitto_passwd's format.
 *
 * One "username:hash" per line; empty lines and lines starting with '#'
 * are skipped. The hash is "$6$SALT$HASH" (SHA-512 of the password
 * followed by the salt) or "$7$ITERATIONS$SALT$HASH" (PBKDF2-HMAC-SHA512),
 * salt and hash in base64. Lines that cannot be read are reported and
 * left out. Parsing is sans-I/O (passwd_parse); passwd_load reads a file.
 */
#ifndef PETREL_AUTH_PASSWD_H
#define PETREL_AUTH_PASSWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PASSWD_SALT_LEN 12
#define PASSWD_HASH_LEN 64
#define PASSWD_DEFAULT_ITERATIONS 101 /* mosquitto_passwd's */

enum passwd_kind { PASSWD_SHA512 = 6, PASSWD_PBKDF2 = 7 };

struct passwd_db;

/* warn(arg, line number, message) for each line left out. NULL on out of
 * memory. */
struct passwd_db *passwd_parse(const char *text, size_t len,
                               void (*warn)(void *arg, int line, const char *msg), void *arg);
/* Read and parse a file: NULL with err set when it cannot be read; lines
 * left out are logged. */
struct passwd_db *passwd_load(const char *path, char *err, size_t errlen);
void passwd_free(struct passwd_db *db);
size_t passwd_count(const struct passwd_db *db);

/* Is password the one of user? False for unknown users too, after as much
 * work as a known one costs. */
bool passwd_check(const struct passwd_db *db, const uint8_t *user, size_t ulen,
                  const uint8_t *password, size_t plen);

/* The hash field for a password with a fresh random salt (kind, and
 * iterations for PBKDF2), NUL-terminated in out. Returns its length or -1. */
int passwd_hash(enum passwd_kind kind, int iterations, const char *password, char *out,
                size_t cap);

#endif
