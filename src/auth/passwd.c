/* passwd.c - see passwd.h. Hashing and base64 are OpenSSL's. */
#include "auth/passwd.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/file.h"
#include "util/log.h"

/* mosquitto_passwd writes a few thousand iterations at most; far more
 * would let one CONNECT hold a worker for seconds. */
#define MAX_ITERATIONS 10000000

struct entry {
    char *user;
    size_t ulen;
    size_t order;           /* line position: the later of two lines wins */
    enum passwd_kind kind;
    int iterations;
    uint8_t salt[PASSWD_SALT_LEN];
    size_t salt_len;
    uint8_t hash[PASSWD_HASH_LEN];
};

struct passwd_db {
    struct entry *e; /* sorted by user */
    size_t n;
    /* What an unknown user's check costs: the first entry's kind,
     * iterations and salt length (a file's entries are usually made
     * alike), so that its time does not tell whether a user exists. */
    struct entry dummy;
};

/* Standard base64 with padding; out must hold 3/4 of the input. Returns
 * the decoded length or -1. */
static int b64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap + 2 || len > INT_MAX)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '+' || ch == '/' ||
                  (ch == '=' && i >= len - 2);
        if (!ok || (i == len - 2 && ch == '=' && in[len - 1] != '='))
            return -1;
    }
    uint8_t tmp[128];
    if (len / 4 * 3 > sizeof(tmp))
        return -1;
    int n = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)len);
    if (n < 0)
        return -1;
    if (in[len - 1] == '=')
        n--;
    if (in[len - 2] == '=')
        n--;
    if ((size_t)n > cap)
        return -1;
    memcpy(out, tmp, (size_t)n);
    return n;
}

static int compute(enum passwd_kind kind, int iterations, const uint8_t *salt, size_t salt_len,
                   const uint8_t *pw, size_t plen, uint8_t out[PASSWD_HASH_LEN])
{
    if (kind == PASSWD_PBKDF2)
        return PKCS5_PBKDF2_HMAC((const char *)pw, (int)plen, salt, (int)salt_len, iterations,
                                 EVP_sha512(), PASSWD_HASH_LEN, out) == 1 ? 0 : -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, pw, plen) == 1 && EVP_DigestUpdate(ctx, salt, salt_len) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == PASSWD_HASH_LEN;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* "$6$salt$hash" or "$7$iterations$salt$hash" into e. */
static const char *parse_hash(const char *h, size_t len, struct entry *e)
{
    if (len < 3 || h[0] != '$' || (h[1] != '6' && h[1] != '7') || h[2] != '$')
        return "not a hashed password (mosquitto_passwd -U converts a file of plain ones)";
    e->kind = h[1] == '7' ? PASSWD_PBKDF2 : PASSWD_SHA512;
    const char *p = h + 3, *end = h + len;
    e->iterations = 0;
    if (e->kind == PASSWD_PBKDF2) {
        long it = 0;
        const char *q = p;
        while (q < end && *q >= '0' && *q <= '9' && it <= MAX_ITERATIONS)
            it = it * 10 + (*q++ - '0');
        if (q == p || q == end || *q != '$' || it < 1 || it > MAX_ITERATIONS)
            return "bad iteration count";
        e->iterations = (int)it;
        p = q + 1;
    }
    const char *dollar = memchr(p, '$', (size_t)(end - p));
    if (!dollar)
        return "no hash after the salt";
    int n = b64_decode(p, (size_t)(dollar - p), e->salt, sizeof(e->salt));
    if (n < 1)
        return "bad salt";
    e->salt_len = (size_t)n;
    p = dollar + 1;
    if (b64_decode(p, (size_t)(end - p), e->hash, sizeof(e->hash)) != PASSWD_HASH_LEN)
        return "bad hash";
    return NULL;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    size_t n = x->ulen < y->ulen ? x->ulen : y->ulen;
    int c = memcmp(x->user, y->user, n);
    return c ? c : (x->ulen > y->ulen) - (x->ulen < y->ulen);
}

static int cmp_entry_order(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    int c = cmp_entry(a, b);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

struct passwd_db *passwd_parse(const char *text, size_t len,
                               void (*warn)(void *arg, int line, const char *msg), void *arg)
{
    struct passwd_db *db = calloc(1, sizeof(*db));
    if (!db)
        return NULL;
    size_t cap = 0;
    int lineno = 0;
    for (size_t pos = 0; pos < len;) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        lineno++;
        while (ll && (line[ll - 1] == '\r' || line[ll - 1] == ' ' || line[ll - 1] == '\t'))
            ll--;
        if (ll == 0 || line[0] == '#')
            continue;
        const char *colon = memchr(line, ':', ll);
        const char *why = NULL;
        struct entry e = {0};
        if (!colon || colon == line)
            why = "not username:hash";
        else if (memchr(line, '\0', ll))
            why = "NUL byte in the line";
        else
            why = parse_hash(colon + 1, (size_t)(line + ll - (colon + 1)), &e);
        if (why) {
            if (warn)
                warn(arg, lineno, why);
            continue;
        }
        if (db->n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct entry *a = realloc(db->e, nc * sizeof(*a));
            if (!a)
                goto oom;
            db->e = a;
            cap = nc;
        }
        e.ulen = (size_t)(colon - line);
        e.order = db->n;
        if (db->n == 0) {
            db->dummy.kind = e.kind;
            db->dummy.iterations = e.iterations;
            db->dummy.salt_len = e.salt_len;
        }
        if (!(e.user = malloc(e.ulen + 1)))
            goto oom;
        memcpy(e.user, line, e.ulen);
        e.user[e.ulen] = '\0';
        db->e[db->n++] = e;
    }
    if (db->n)
        qsort(db->e, db->n, sizeof(*db->e), cmp_entry_order);
    /* A user given twice: the later line wins. */
    size_t out = 0;
    for (size_t i = 0; i < db->n; i++) {
        if (out && cmp_entry(&db->e[out - 1], &db->e[i]) == 0) {
            if (warn)
                warn(arg, 0, "a user is given more than once; one of the lines is used");
            free(db->e[out - 1].user);
            db->e[out - 1] = db->e[i];
            continue;
        }
        db->e[out++] = db->e[i];
    }
    db->n = out;
    return db;
oom:
    passwd_free(db);
    return NULL;
}

static void log_line(void *arg, int line, const char *msg)
{
    if (line)
        log_warning("%s line %d: %s; the line is left out", (const char *)arg, line, msg);
    else
        log_warning("%s: %s", (const char *)arg, msg);
}

struct passwd_db *passwd_load(const char *path, char *err, size_t errlen)
{
    char *text;
    size_t len;
    if (file_read_all(path, 64u << 20, &text, &len) < 0) {
        snprintf(err, errlen, "cannot open the password file %s: %s", path, strerror(errno));
        return NULL;
    }
    struct passwd_db *db = passwd_parse(text, len, log_line, (void *)path);
    OPENSSL_cleanse(text, len);
    free(text);
    if (!db)
        snprintf(err, errlen, "out of memory reading the password file %s", path);
    return db;
}

void passwd_free(struct passwd_db *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->n; i++)
        free(db->e[i].user);
    free(db->e);
    free(db);
}

size_t passwd_count(const struct passwd_db *db)
{
    return db ? db->n : 0;
}

bool passwd_check(const struct passwd_db *db, const uint8_t *user, size_t ulen,
                  const uint8_t *password, size_t plen)
{
    struct entry key = {.user = (char *)user, .ulen = ulen};
    const struct entry *e = db && db->n ? bsearch(&key, db->e, db->n, sizeof(*db->e), cmp_entry)
                                        : NULL;
    /* An unknown user costs a hash like the file's. */
    static const struct entry fallback = {.kind = PASSWD_PBKDF2,
                                          .iterations = PASSWD_DEFAULT_ITERATIONS,
                                          .salt_len = PASSWD_SALT_LEN};
    const struct entry *use = e ? e : db && db->n ? &db->dummy : &fallback;
    uint8_t got[PASSWD_HASH_LEN];
    if (compute(use->kind, use->iterations, use->salt, use->salt_len, password, plen, got) < 0)
        return false;
    bool same = CRYPTO_memcmp(got, use->hash, PASSWD_HASH_LEN) == 0;
    OPENSSL_cleanse(got, sizeof(got));
    return e && same;
}

int passwd_hash(enum passwd_kind kind, int iterations, const char *password, char *out,
                size_t cap)
{
    uint8_t salt[PASSWD_SALT_LEN], hash[PASSWD_HASH_LEN];
    if (kind == PASSWD_PBKDF2 && (iterations < 1 || iterations > MAX_ITERATIONS))
        return -1;
    if (RAND_bytes(salt, sizeof(salt)) != 1 ||
        compute(kind, iterations, salt, sizeof(salt), (const uint8_t *)password,
                strlen(password), hash) < 0)
        return -1;
    char s64[32], h64[96];
    EVP_EncodeBlock((unsigned char *)s64, salt, sizeof(salt));
    EVP_EncodeBlock((unsigned char *)h64, hash, sizeof(hash));
    int n = kind == PASSWD_PBKDF2 ? snprintf(out, cap, "$7$%d$%s$%s", iterations, s64, h64)
                                  : snprintf(out, cap, "$6$%s$%s", s64, h64);
    OPENSSL_cleanse(hash, sizeof(hash));
    return n < 0 || (size_t)n >= cap ? -1 : n;
}
