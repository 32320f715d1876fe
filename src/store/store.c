/* store.c - the durable store on RocksDB (C API).
 *
 * Why RocksDB: the broker's writes are small records inserted and deleted
 * at high rate (a queued message lives from PUBLISH to PUBACK), which an
 * LSM tree absorbs as sequential log writes; concurrent synchronous writes
 * from several workers are grouped by the engine into one fsync (group
 * commit); and it is a maintained Debian library. Its memory is bounded by
 * the block cache and write buffers configured here.
 */
#include "store/store.h"

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <sys/statvfs.h>

#include "store/engine_hooks.h"
#include "store/record.h"

/* Column families: retained messages (R records) have their own, with a
 * skip-list write buffer, because the broker reads them at run time (a
 * lookup per retained PUBLISH, scans per SUBSCRIBE); everything else is
 * read only at startup and stays in the default one, with a vector. */
enum { CF_DEFAULT, CF_RETAINED, CF_COUNT };
static const char *const cf_names[CF_COUNT] = {"default", "retained"};

struct store {
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[CF_COUNT];
    rocksdb_options_t *opts, *ropts;
    rocksdb_block_based_table_options_t *table, *rtable;
    rocksdb_cache_t *cache;
    rocksdb_writeoptions_t *wsync, *wasync;
    rocksdb_readoptions_t *rd;
    char *dir;
    /* Held shared around every call into the engine, exclusively while
     * store_recover closes and opens it again (db is NULL if that
     * failed). */
    pthread_rwlock_t lock;
    bool lock_ready;
    atomic_bool broken; /* the engine reported an error: reopen it */
};

/* Under ThreadSanitizer the engine is entered by one thread at a time.
 * RocksDB (Debian's build, not instrumented) hands a committing thread's
 * batch to the leader of its write group and wakes it with atomics the
 * sanitizer cannot see, so every such hand-over would be reported as a
 * race. Serialized, group commit is off, which costs only speed; the
 * broker's own synchronization is still checked. */
#ifdef PETREL_TSAN_BUILD
#define ENGINE_LOCK(st) pthread_rwlock_wrlock(&(st)->lock)
#else
#define ENGINE_LOCK(st) pthread_rwlock_rdlock(&(st)->lock)
#endif
/* Re-entrant per thread: a scan's callback may add to a batch, which
 * enters again for a retained key's column family. */
static _Thread_local int engine_depth;
#define ENGINE_ENTER(st)                                                                  \
    do {                                                                                  \
        if (engine_depth++ == 0)                                                          \
            ENGINE_LOCK(st);                                                              \
    } while (0)
#define ENGINE_LEAVE(st)                                                                  \
    do {                                                                                  \
        if (--engine_depth == 0)                                                          \
            pthread_rwlock_unlock(&(st)->lock);                                           \
    } while (0)

#define CLOSED "the store is closed after a failure"

static void set_err(char *err, size_t errlen, const char *what, char *rerr)
{
    snprintf(err, errlen, "%s: %s", what, rerr ? rerr : "unknown error");
    rocksdb_free(rerr);
}

struct store_batch {
    struct store *st;
    rocksdb_writebatch_t *wb;
    bool marked;
};

static bool is_retained(const void *k, size_t klen)
{
    return klen > 0 && *(const uint8_t *)k == REC_RETAINED;
}

/* The column family of a key (or of a key prefix), under ENGINE_ENTER. */
static rocksdb_column_family_handle_t *cf_of(const struct store *st, const void *k, size_t klen)
{
    return st->cf[is_retained(k, klen) ? CF_RETAINED : CF_DEFAULT];
}

static int engine_open(struct store *st, char *err, size_t errlen)
{
    const rocksdb_options_t *cfo[CF_COUNT] = {st->opts, st->ropts};
    char *rerr = NULL;
    st->db = rocksdb_open_column_families(st->opts, st->dir, CF_COUNT, cf_names, cfo, st->cf,
                                          &rerr);
    if (!st->db) {
        memset(st->cf, 0, sizeof(st->cf));
        set_err(err, errlen, "cannot open the store", rerr);
        return -1;
    }
    return 0;
}

static void engine_close(struct store *st)
{
    for (int i = 0; i < CF_COUNT; i++) {
        if (st->cf[i])
            rocksdb_column_family_handle_destroy(st->cf[i]);
        st->cf[i] = NULL;
    }
    if (st->db)
        rocksdb_close(st->db);
    st->db = NULL;
}

/* Format 3: retained messages move from the default column family to
 * their own. */
static int move_retained(struct store *st, char *err, size_t errlen)
{
    const char prefix = REC_RETAINED;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->rd, st->cf[CF_DEFAULT]);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    char *rerr = NULL;
    size_t moved = 0;
    for (rocksdb_iter_seek(it, &prefix, 1); rocksdb_iter_valid(it) && !rerr;
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (!is_retained(k, klen))
            break;
        const char *v = rocksdb_iter_value(it, &vlen);
        rocksdb_writebatch_put_cf(wb, st->cf[CF_RETAINED], k, klen, v, vlen);
        rocksdb_writebatch_delete(wb, k, klen);
        if (++moved % 10000 == 0) {
            rocksdb_write(st->db, st->wsync, wb, &rerr);
            rocksdb_writebatch_clear(wb);
        }
    }
    if (!rerr)
        rocksdb_iter_get_error(it, &rerr);
    if (!rerr)
        rocksdb_write(st->db, st->wsync, wb, &rerr);
    rocksdb_writebatch_destroy(wb);
    rocksdb_iter_destroy(it);
    if (rerr) {
        set_err(err, errlen, "cannot move retained messages to their column family", rerr);
        return -1;
    }
    return 0;
}

/* The format version: written into an empty store, checked otherwise,
 * and raised to this build's in a store of an earlier version. */
static int check_format(struct store *st, char *err, size_t errlen)
{
    uint8_t key[1];
    size_t klen = rec_key_meta(key);
    uint8_t *v = NULL;
    size_t vlen = 0;
    int found = store_get(st, key, klen, &v, &vlen);
    if (found < 0) {
        snprintf(err, errlen, "cannot read the store's format version");
        return -1;
    }
    if (found) {
        int ver = rec_meta_decode(v, vlen);
        free(v);
        if (ver < 1 || ver > STORE_FORMAT_VERSION) {
            snprintf(err, errlen, "store format version %d, this build reads versions 1 to %d%s",
                     ver, STORE_FORMAT_VERSION, ver < 0 ? " (damaged version record)" : "");
            return -1;
        }
        if (ver == STORE_FORMAT_VERSION)
            return 0;
        if (ver < 3 && move_retained(st, err, errlen) < 0)
            return -1;
        /* Older records are read as they are; what this build writes
         * from now on may be newer, so an older build must refuse it. */
    }
    uint8_t val[8];
    size_t vl = rec_meta_encode(val, sizeof(val));
    char *rerr = NULL;
    ENGINE_ENTER(st);
    rocksdb_put(st->db, st->wsync, (const char *)key, klen, (const char *)val, vl, &rerr);
    ENGINE_LEAVE(st);
    if (rerr) {
        set_err(err, errlen, "cannot write to the store", rerr);
        return -1;
    }
    return 0;
}

static void engine_failed(void *arg, const char *what)
{
    struct store *st = arg;
    atomic_store(&st->broken, true);
}

struct store *store_open(const char *dir, size_t cache_bytes, char *err, size_t errlen)
{
    struct store *st = calloc(1, sizeof(*st));
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* A reopen must not wait behind a stream of commits. */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    if (st && pthread_rwlock_init(&st->lock, &ra) == 0)
        st->lock_ready = true;
    pthread_rwlockattr_destroy(&ra);
    if (!st || !st->lock_ready) {
        free(st);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (cache_bytes < (4u << 20))
        cache_bytes = 4u << 20;
    st->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(st->opts, 1);
    rocksdb_options_set_paranoid_checks(st->opts, 1);
    rocksdb_options_set_max_open_files(st->opts, 256);
    engine_hooks_install(st->opts, engine_failed, st);
    /* Memory: half for write buffers (four of an eighth each), half for
     * the block cache. Most records live a few milliseconds (a message
     * from PUBLISH to PUBACK): large write buffers let the delete meet its
     * put in memory, and several of them let writes go on while one is
     * flushed instead of stalling the workers. */
    size_t wbuf = cache_bytes / 8;
    rocksdb_options_set_write_buffer_size(st->opts, wbuf);
    rocksdb_options_set_max_write_buffer_number(st->opts, 4);
    rocksdb_options_set_max_background_jobs(st->opts, 2);
    rocksdb_options_set_compression(st->opts, rocksdb_no_compression);
    /* The broker reads only at startup and, rarely, to bring a queue back
     * from disk (thousands of records per read), so the write buffer is an
     * unsorted vector, sorted once when it is flushed: a skip list compared keys on every insert, which took about
     * 70% of the broker's CPU under durable QoS 1 load
     * (docs/benchmarks.md). A vector cannot take concurrent inserts;
     * commits from several workers are still grouped into one write. */
    rocksdb_options_set_memtable_vector_rep(st->opts);
    rocksdb_options_set_allow_concurrent_memtable_write(st->opts, 0);
    /* Retained messages: two write buffers of a sixteenth, taken from the
     * block cache's half. */
    st->ropts = rocksdb_options_create();
    rocksdb_options_set_write_buffer_size(st->ropts, cache_bytes / 16);
    rocksdb_options_set_max_write_buffer_number(st->ropts, 2);
    rocksdb_options_set_compression(st->ropts, rocksdb_no_compression);
    rocksdb_options_set_create_missing_column_families(st->opts, 1);
    st->cache = rocksdb_cache_create_lru(cache_bytes - 4 * wbuf - cache_bytes / 8);
    st->table = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(st->table, st->cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(st->table, 1);
    rocksdb_options_set_block_based_table_factory(st->opts, st->table);
    /* A retained PUBLISH on a new topic looks for one that is not there:
     * a Bloom filter answers that without reading the tables. */
    st->rtable = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(st->rtable, st->cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(st->rtable, 1);
    rocksdb_block_based_options_set_filter_policy(st->rtable,
                                                  rocksdb_filterpolicy_create_bloom(10));
    rocksdb_options_set_block_based_table_factory(st->ropts, st->rtable);
    st->wsync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->wsync, 1);
    st->wasync = rocksdb_writeoptions_create();
    st->rd = rocksdb_readoptions_create();
    st->dir = strdup(dir);
    /* Created here: the engine complains when it is not there yet. */
    (void)mkdir(dir, 0700);
    if (!st->dir || engine_open(st, err, errlen) < 0) {
        store_close(st);
        return NULL;
    }
    if (check_format(st, err, errlen) < 0) {
        store_close(st);
        return NULL;
    }
    return st;
}

void store_close(struct store *st)
{
    if (!st)
        return;
    engine_close(st);
    if (st->rd)
        rocksdb_readoptions_destroy(st->rd);
    if (st->wsync)
        rocksdb_writeoptions_destroy(st->wsync);
    if (st->wasync)
        rocksdb_writeoptions_destroy(st->wasync);
    if (st->opts)
        rocksdb_options_destroy(st->opts);
    if (st->ropts)
        rocksdb_options_destroy(st->ropts);
    if (st->table)
        rocksdb_block_based_options_destroy(st->table);
    if (st->rtable)
        rocksdb_block_based_options_destroy(st->rtable);
    if (st->cache)
        rocksdb_cache_destroy(st->cache);
    if (st->lock_ready)
        pthread_rwlock_destroy(&st->lock);
    free(st->dir);
    free(st);
}

bool store_needs_recovery(const struct store *st)
{
    return atomic_load_explicit(&st->broken, memory_order_relaxed);
}

int store_recover(struct store *st, char *err, size_t errlen)
{
    if (!atomic_load(&st->broken))
        return 0;
    int rc = 0;
    pthread_rwlock_wrlock(&st->lock);
    if (atomic_exchange(&st->broken, false)) {
        /* Closing does not write the write buffers out (engine_hooks.h):
         * they are in the log, which opening replays up to its last whole
         * record. */
        engine_close(st);
        if (engine_open(st, err, errlen) == 0) {
            rc = 1;
        } else {
            atomic_store(&st->broken, true);
            rc = -1;
        }
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

struct store_batch *store_batch_new(struct store *st)
{
    struct store_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->st = st;
    b->wb = rocksdb_writebatch_create();
    return b;
}

void store_batch_free(struct store_batch *b)
{
    if (!b)
        return;
    rocksdb_writebatch_destroy(b->wb);
    free(b);
}

void store_batch_put(struct store_batch *b, const void *k, size_t klen, const void *v,
                     size_t vlen)
{
    if (!is_retained(k, klen)) {
        rocksdb_writebatch_put(b->wb, k, klen, v, vlen);
        return;
    }
    ENGINE_ENTER(b->st);
    if (b->st->db)
        rocksdb_writebatch_put_cf(b->wb, b->st->cf[CF_RETAINED], k, klen, v, vlen);
    ENGINE_LEAVE(b->st);
}

void store_batch_delete(struct store_batch *b, const void *k, size_t klen)
{
    if (!is_retained(k, klen)) {
        rocksdb_writebatch_delete(b->wb, k, klen);
        return;
    }
    ENGINE_ENTER(b->st);
    if (b->st->db)
        rocksdb_writebatch_delete_cf(b->wb, b->st->cf[CF_RETAINED], k, klen);
    ENGINE_LEAVE(b->st);
}

void store_batch_delete_range(struct store_batch *b, const void *lo, size_t lolen,
                              const void *hi, size_t hilen)
{
    rocksdb_writebatch_delete_range(b->wb, lo, lolen, hi, hilen);
}

void store_batch_mark(struct store_batch *b)
{
    if (b->marked) {
        char *rerr = NULL;
        rocksdb_writebatch_pop_save_point(b->wb, &rerr);
        rocksdb_free(rerr);
    }
    rocksdb_writebatch_set_save_point(b->wb);
    b->marked = true;
}

bool store_batch_undo(struct store_batch *b)
{
    if (!b->marked)
        return false;
    char *rerr = NULL;
    rocksdb_writebatch_rollback_to_save_point(b->wb, &rerr);
    b->marked = false;
    if (rerr) {
        rocksdb_free(rerr);
        return false;
    }
    return true;
}

size_t store_batch_count(const struct store_batch *b)
{
    return (size_t)rocksdb_writebatch_count(b->wb);
}

int store_commit(struct store *st, struct store_batch *b, bool sync, char *err, size_t errlen)
{
    if (rocksdb_writebatch_count(b->wb) == 0)
        return 0;
    char *rerr = NULL;
    ENGINE_ENTER(st);
    if (st->db)
        rocksdb_write(st->db, sync ? st->wsync : st->wasync, b->wb, &rerr);
    bool closed = !st->db;
    ENGINE_LEAVE(st);
    rocksdb_writebatch_clear(b->wb); /* and its save points */
    b->marked = false;
    if (closed) {
        snprintf(err, errlen, "store write failed: " CLOSED);
        return -1;
    }
    if (rerr) {
        set_err(err, errlen, "store write failed", rerr);
        return -1;
    }
    return 0;
}

int64_t store_free_bytes(const struct store *st)
{
    struct statvfs sv;
    if (!st->dir || statvfs(st->dir, &sv) < 0)
        return -1;
    return (int64_t)((uint64_t)sv.f_bavail * sv.f_frsize);
}

size_t store_batch_bytes(const struct store_batch *b)
{
    size_t n = 0;
    (void)rocksdb_writebatch_data(b->wb, &n);
    return n;
}

int store_sync(struct store *st, char *err, size_t errlen)
{
    char *rerr = NULL;
    ENGINE_ENTER(st);
    /* Not after a failure: syncing a log that failed would abort. */
    bool closed = !st->db || atomic_load(&st->broken);
    if (!closed)
        rocksdb_flush_wal(st->db, 1, &rerr);
    ENGINE_LEAVE(st);
    if (closed) {
        snprintf(err, errlen, "store sync failed: " CLOSED);
        return -1;
    }
    if (rerr) {
        set_err(err, errlen, "store sync failed", rerr);
        return -1;
    }
    return 0;
}

int store_scan(struct store *st, const void *prefix, size_t plen, store_scan_fn fn, void *arg)
{
    return store_scan_from(st, prefix, plen, prefix, plen, fn, arg);
}

int store_scan_from(struct store *st, const void *prefix, size_t plen, const void *from,
                    size_t flen, store_scan_fn fn, void *arg)
{
    ENGINE_ENTER(st);
    if (!st->db) {
        ENGINE_LEAVE(st);
        return -1;
    }
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->rd, cf_of(st, prefix, plen));
    int rc = 0;
    for (rocksdb_iter_seek(it, from, flen); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen < plen || memcmp(k, prefix, plen) != 0)
            break;
        const char *v = rocksdb_iter_value(it, &vlen);
        rc = fn((const uint8_t *)k, klen, (const uint8_t *)v, vlen, arg);
        if (rc)
            break;
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) {
        rocksdb_free(rerr);
        rc = -1;
    }
    rocksdb_iter_destroy(it);
    ENGINE_LEAVE(st);
    return rc;
}

int store_get(struct store *st, const void *k, size_t klen, uint8_t **v, size_t *vlen)
{
    char *rerr = NULL;
    ENGINE_ENTER(st);
    char *val = st->db ? rocksdb_get_cf(st->db, st->rd, cf_of(st, k, klen), k, klen, vlen, &rerr)
                       : NULL;
    bool closed = !st->db;
    ENGINE_LEAVE(st);
    if (rerr || closed) {
        rocksdb_free(rerr);
        return -1;
    }
    if (!val)
        return 0;
    *v = malloc(*vlen ? *vlen : 1);
    if (!*v) {
        rocksdb_free(val);
        return -1;
    }
    memcpy(*v, val, *vlen);
    rocksdb_free(val);
    return 1;
}
