/* store.h - the durable store: an ordered key-value engine behind a small
 * interface (RocksDB today, store.c). The broker writes records of
 * record.h in batches, one batch per worker, committed atomically at the
 * end of a loop iteration, and reads everything back at startup (and, at
 * run time, queues that were kept on disk only).
 *
 * Thread safety: store_commit and store_scan may be called from any
 * thread; a batch belongs to one thread.
 */
#ifndef PETREL_STORE_STORE_H
#define PETREL_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct store_batch;

/* Open (creating if missing) the store in dir. cache_bytes bounds the
 * engine's read cache and write buffers. On failure returns NULL with a
 * reason in err: unwritable directory, corrupt files, a format newer than
 * this build, or the store being in use by another process. */
struct store *store_open(const char *dir, size_t cache_bytes, char *err, size_t errlen);
void store_close(struct store *st);

/* A batch of writes to st (it routes each record to its column family). */
struct store_batch *store_batch_new(struct store *st);
void store_batch_free(struct store_batch *b);
void store_batch_put(struct store_batch *b, const void *k, size_t klen,
                     const void *v, size_t vlen);
void store_batch_delete(struct store_batch *b, const void *k, size_t klen);
/* Delete every key in [lo, hi). */
void store_batch_delete_range(struct store_batch *b, const void *lo, size_t lolen,
                              const void *hi, size_t hilen);
/* Remember the batch as it is now (one mark at a time), and take back
 * everything added since (false when there is no mark). */
void store_batch_mark(struct store_batch *b);
bool store_batch_undo(struct store_batch *b);
/* Operations waiting in the batch. */
size_t store_batch_count(const struct store_batch *b);

/* Apply the batch atomically and empty it. sync: return only once it is on
 * stable storage (fsync of the write-ahead log; concurrent commits from
 * other threads share one fsync). Returns 0, or -1 with a reason in err. */
int store_commit(struct store *st, struct store_batch *b, bool sync, char *err, size_t errlen);

/* Bytes of the batch's encoded operations (what a commit writes). */
size_t store_batch_bytes(const struct store_batch *b);

/* Free bytes on the store's filesystem for an unprivileged writer, or -1. */
int64_t store_free_bytes(const struct store *st);

/* After a failed write the engine refuses writes until it is reopened
 * (engine_hooks.h). store_recover closes and opens it again, waiting for
 * the calls in progress and holding back new ones meanwhile: returns 1
 * if it did, 0 if nothing needed it, -1 with a reason in err (then every
 * call fails until a later store_recover succeeds). */
bool store_needs_recovery(const struct store *st);
int store_recover(struct store *st, char *err, size_t errlen);

/* Put everything committed so far on stable storage. */
int store_sync(struct store *st, char *err, size_t errlen);

/* Every record whose key starts with prefix, in key order: fn returns 0 to
 * go on. Returns 0, -1 on a read error, or fn's non-zero result. */
typedef int (*store_scan_fn)(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                             void *arg);
int store_scan(struct store *st, const void *prefix, size_t plen, store_scan_fn fn, void *arg);
/* The same, starting at the first key not below from. */
int store_scan_from(struct store *st, const void *prefix, size_t plen, const void *from,
                    size_t flen, store_scan_fn fn, void *arg);

/* Read one key into a malloc'd buffer (*v, *vlen). Returns 1 found, 0 not
 * found, -1 error. */
int store_get(struct store *st, const void *k, size_t klen, uint8_t **v, size_t *vlen);

#endif
