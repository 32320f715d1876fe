/* auth.c - see auth.h. The password databases are shared by the listeners
 * that name the same file; a reload swaps them under a reader-writer lock
 * (held shared while a CONNECT checks a password). */
#include "broker/auth.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passwd.h"
#include "broker/broker.h"
#include "conf/config.h"
#include "net/listener.h"
#include "util/log.h"

struct pw_file {
    char *path;
    struct passwd_db *db;
};

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static struct pw_file *files;
static size_t file_count;

static const char *path_of(const struct listener *l)
{
    return l->conf->security.password_file;
}

static struct pw_file *file_of(const struct listener *l)
{
    const char *p = path_of(l);
    for (size_t i = 0; p && i < file_count; i++)
        if (strcmp(files[i].path, p) == 0)
            return &files[i];
    return NULL;
}

int auth_open(struct broker *b)
{
    for (int i = 0; i < b->listener_count; i++) {
        /* Serving without the rules the operator wrote would let every
         * client read and write everything. */
        if (b->listeners[i].conf->security.acl_file) {
            log_error("acl_file %s: access control files are not supported yet; not "
                      "starting rather than letting every client read and write every topic",
                      b->listeners[i].conf->security.acl_file);
            return -1;
        }
    }
    for (int i = 0; i < b->listener_count; i++) {
        const char *p = path_of(&b->listeners[i]);
        if (!p || file_of(&b->listeners[i]))
            continue;
        char err[512];
        struct passwd_db *db = passwd_load(p, err, sizeof(err));
        if (!db) {
            log_error("%s", err);
            return -1;
        }
        struct pw_file *a = realloc(files, (file_count + 1) * sizeof(*a));
        char *copy = strdup(p);
        if (!a || !copy) {
            free(a ? NULL : copy);
            if (a)
                files = a;
            free(copy);
            passwd_free(db);
            log_error("out of memory reading %s", p);
            return -1;
        }
        files = a;
        files[file_count++] = (struct pw_file){copy, db};
        log_notice("password file %s: %zu user%s", p, passwd_count(db),
                   passwd_count(db) == 1 ? "" : "s");
    }
    return 0;
}

void auth_reload(struct broker *b)
{
    (void)b;
    for (size_t i = 0; i < file_count; i++) {
        char err[512];
        struct passwd_db *db = passwd_load(files[i].path, err, sizeof(err));
        if (!db) {
            log_error("%s: keeping the users read before", err);
            continue;
        }
        pthread_rwlock_wrlock(&lock);
        struct passwd_db *old = files[i].db;
        files[i].db = db;
        pthread_rwlock_unlock(&lock);
        passwd_free(old);
        log_notice("password file %s read again: %zu user%s", files[i].path,
                   passwd_count(db), passwd_count(db) == 1 ? "" : "s");
    }
}

void auth_close(struct broker *b)
{
    (void)b;
    for (size_t i = 0; i < file_count; i++) {
        passwd_free(files[i].db);
        free(files[i].path);
    }
    free(files);
    files = NULL;
    file_count = 0;
}

bool auth_has_passwords(const struct listener *l)
{
    return path_of(l) != NULL;
}

bool auth_password_ok(const struct listener *l, const uint8_t *user, size_t ulen,
                      bool has_password, const uint8_t *pw, size_t plen)
{
    pthread_rwlock_rdlock(&lock);
    struct pw_file *f = file_of(l);
    /* Without a password, the check still costs a hash: a known and an
     * unknown username take the same time. */
    bool ok = f && passwd_check(f->db, user, ulen, has_password ? pw : (const uint8_t *)"",
                                has_password ? plen : 0) &&
              has_password;
    pthread_rwlock_unlock(&lock);
    return ok;
}
