/* auth.c - see auth.h. Password and ACL files are shared by the listeners
 * that name the same file; a reload swaps them under a reader-writer lock
 * (held shared while a CONNECT checks a password or takes its rules). */
#include "broker/auth.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "auth/acl.h"
#include "auth/passwd.h"
#include "broker/broker.h"
#include "conf/config.h"
#include "net/listener.h"
#include "util/log.h"

struct auth_file {
    char *path;
    bool is_acl;
    void *db; /* struct passwd_db or struct acl */
};

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static struct auth_file *files;
static size_t file_count;

static const char *path_of(const struct listener *l, bool is_acl)
{
    return is_acl ? l->conf->security.acl_file : l->conf->security.password_file;
}

static struct auth_file *file_of(const struct listener *l, bool is_acl)
{
    const char *p = path_of(l, is_acl);
    for (size_t i = 0; p && i < file_count; i++)
        if (files[i].is_acl == is_acl && strcmp(files[i].path, p) == 0)
            return &files[i];
    return NULL;
}

static void *load(const char *path, bool is_acl, char *err, size_t errlen)
{
    return is_acl ? (void *)acl_load(path, err, errlen) : (void *)passwd_load(path, err, errlen);
}

static void drop(void *db, bool is_acl)
{
    if (is_acl)
        acl_free(db);
    else
        passwd_free(db);
}

static void report(const struct auth_file *f, const char *how)
{
    size_t n = f->is_acl ? acl_rule_count(f->db) : passwd_count(f->db);
    log_notice("%s file %s%s: %zu %s%s", f->is_acl ? "ACL" : "password", f->path, how, n,
               f->is_acl ? "rule" : "user", n == 1 ? "" : "s");
}

int auth_open(struct broker *b)
{
    for (int i = 0; i < b->listener_count; i++) {
        for (int k = 0; k < 2; k++) {
            bool is_acl = k == 1;
            const char *p = path_of(&b->listeners[i], is_acl);
            if (!p || file_of(&b->listeners[i], is_acl))
                continue;
            char err[512];
            void *db = load(p, is_acl, err, sizeof(err));
            if (!db) {
                log_error("%s", err);
                return -1;
            }
            struct auth_file *a = realloc(files, (file_count + 1) * sizeof(*a));
            if (a)
                files = a;
            char *copy = a ? strdup(p) : NULL;
            if (!copy) {
                drop(db, is_acl);
                log_error("out of memory reading %s", p);
                return -1;
            }
            files[file_count] = (struct auth_file){copy, is_acl, db};
            report(&files[file_count++], "");
        }
    }
    return 0;
}

void auth_reload(struct broker *b)
{
    (void)b;
    for (size_t i = 0; i < file_count; i++) {
        char err[512];
        void *db = load(files[i].path, files[i].is_acl, err, sizeof(err));
        if (!db) {
            log_error("%s: keeping what was read before", err);
            continue;
        }
        pthread_rwlock_wrlock(&lock);
        void *old = files[i].db;
        files[i].db = db;
        pthread_rwlock_unlock(&lock);
        drop(old, files[i].is_acl);
        report(&files[i], " read again");
    }
}

void auth_close(struct broker *b)
{
    (void)b;
    for (size_t i = 0; i < file_count; i++) {
        drop(files[i].db, files[i].is_acl);
        free(files[i].path);
    }
    free(files);
    files = NULL;
    file_count = 0;
}

bool auth_has_passwords(const struct listener *l)
{
    return path_of(l, false) != NULL;
}

bool auth_password_ok(const struct listener *l, const uint8_t *user, size_t ulen,
                      bool has_password, const uint8_t *pw, size_t plen)
{
    pthread_rwlock_rdlock(&lock);
    struct auth_file *f = file_of(l, false);
    /* Without a password, the check still costs a hash: a known and an
     * unknown username take the same time. */
    bool ok = f && passwd_check(f->db, user, ulen, has_password ? pw : (const uint8_t *)"",
                                has_password ? plen : 0) &&
              has_password;
    pthread_rwlock_unlock(&lock);
    return ok;
}

int auth_acl_rules(const struct listener *l, const uint8_t *user, size_t ulen, bool has_user,
                   const uint8_t *cid, size_t clen, struct acl_rules **out)
{
    *out = NULL;
    if (!path_of(l, true))
        return 0;
    pthread_rwlock_rdlock(&lock);
    struct auth_file *f = file_of(l, true);
    *out = f ? acl_rules_for(f->db, user, ulen, has_user, cid, clen) : NULL;
    pthread_rwlock_unlock(&lock);
    return *out ? 0 : -1;
}
