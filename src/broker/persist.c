/* persist.c - the broker's durable state (see persist.h). Record layouts
 * are in store/record.c, the engine in store/store.c. */
#include "broker/persist.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "broker/message.h"
#include "broker/retain.h"
#include "broker/router.h"
#include "broker/session.h"
#include "mqtt/topic.h"
#include "net/conn.h"
#include "net/worker.h"
#include "store/record.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"

/* Key buffers: the second holds the end of a client's key range. Thread
 * local, because any worker may write any session's delivery records. */
static _Thread_local uint8_t key_buf[RECORD_KEY_MAX];
static _Thread_local uint8_t key_end_buf[RECORD_KEY_MAX];

/* A message's store_id, store_refs and store_written change together
 * under one of these (chosen by the message's address): the last
 * reference deletes the M record, if one was written, and clears the id,
 * so a later delivery of the same message starts afresh instead of
 * referring to a deleted record. */
#define STRIPES 64
static pthread_mutex_t stripes[STRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

static void stripes_init(void)
{
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&stripes[i], NULL);
}

static pthread_mutex_t *stripe_of(const struct message *m)
{
    return &stripes[((uintptr_t)m >> 6) % STRIPES];
}

static bool on(const struct worker *w)
{
    return w->broker->store != NULL && w->batch != NULL;
}

static uint64_t wall_of_mono(uint64_t mono)
{
    uint64_t now = clock_mono_ms();
    uint64_t wall = clock_wall_ms();
    return mono > now ? wall + (mono - now) : wall;
}

static void rec_from_message(struct rec_message *r, const struct message *m)
{
    r->qos = m->qos;
    r->retain = m->retain;
    r->expiry_at = m->expiry_at;
    r->origin_hash = m->origin_hash;
    r->topic = (const uint8_t *)m->topic;
    r->topic_len = m->topic_len;
    r->props = m->props;
    r->props_len = m->props_len;
    r->payload = m->payload;
    r->payload_len = m->payload_len;
}

static struct message *message_from_rec(const struct rec_message *r)
{
    return message_new(r->topic, r->topic_len, r->payload, r->payload_len, r->props,
                       r->props_len, r->qos, r->retain, r->expiry_at, 0, r->origin_hash);
}

/* A put is a promise (a message, a packet id about to be sent, a session):
 * the commit that carries one waits for the disk. A batch of deletes only
 * (acknowledged messages) does not: losing one re-sends a message that was
 * already delivered, which QoS 1 allows and QoS 2 detects. */
static void batch_put(struct worker *w, const uint8_t *k, size_t klen, const void *v,
                      size_t vlen)
{
    store_batch_put(w->batch, k, klen, v, vlen);
    w->store_sync = true;
}

/* Encode with enc into a stack buffer, or the heap when larger, and put. */
typedef size_t (*encode_fn)(const void *rec, uint8_t *out, size_t cap);

static void put_value(struct worker *w, const uint8_t *k, size_t klen, encode_fn enc,
                      const void *rec)
{
    uint8_t small[512];
    size_t n = enc(rec, small, sizeof(small));
    if (n <= sizeof(small)) {
        batch_put(w, k, klen, small, n);
        return;
    }
    uint8_t *big = malloc(n);
    if (!big) {
        log_error("store: out of memory encoding a record; it is not stored");
        return;
    }
    enc(rec, big, n);
    batch_put(w, k, klen, big, n);
    free(big);
}

static size_t enc_message(const void *r, uint8_t *o, size_t c) { return rec_message_encode(r, o, c); }
static size_t enc_session(const void *r, uint8_t *o, size_t c) { return rec_session_encode(r, o, c); }
static size_t enc_sub(const void *r, uint8_t *o, size_t c) { return rec_sub_encode(r, o, c); }
static size_t enc_delivery(const void *r, uint8_t *o, size_t c) { return rec_delivery_encode(r, o, c); }

/* ---- opening and committing ------------------------------------------- */

int persist_open(struct broker *b)
{
    const struct config *cf = b->conf;
    b->store = NULL;
    if (!cf->persistence || cf->durability == DURABILITY_NONE)
        return 0;
    pthread_once(&stripes_once, stripes_init);
    const char *dir = cf->persistence_location ? cf->persistence_location : ".";
    const char *name = cf->persistence_file ? cf->persistence_file : "petrel.db";
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        log_error("persistence_location %s: cannot create it: %s", dir, strerror(errno));
        return -1;
    }
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
        log_error("persistence_location: path too long");
        return -1;
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        log_error("%s is a file, not a Petrel store (a Mosquitto persistence file cannot be "
                  "read); set persistence_file to another name", path);
        return -1;
    }
    char err[512];
    b->store = store_open(path, cf->store_cache_size, err, sizeof(err));
    if (!b->store) {
        log_error("cannot open the store %s: %s", path, err);
        return -1;
    }
    log_notice("store %s open, durability %s", path,
               cf->durability == DURABILITY_SYNC ? "sync" : "periodic");
    return 0;
}

/* Free space is checked after every SPACE_CHECK_BYTES a worker commits,
 * and every SPACE_CHECK_MS in any case (something else may fill the
 * disk). Below store_min_free, QoS 1/2 messages are refused, so that the
 * engine never meets a full disk: what is still written (acknowledgements,
 * sessions, flushes of the write buffers) comes out of that reserve. */
#define SPACE_CHECK_BYTES (1u << 20)
#define SPACE_CHECK_MS 1000

static void check_space(struct worker *w)
{
    struct broker *b = w->broker;
    w->store_bytes = 0;
    w->next_space_check = w->now + SPACE_CHECK_MS;
    int64_t avail = store_free_bytes(b->store);
    if (avail < 0)
        return;
    uint64_t min = b->conf->store_min_free ? b->conf->store_min_free
                                           : 2 * b->conf->store_cache_size;
    uint64_t free_bytes = (uint64_t)avail;
    if (free_bytes < min) {
        if (!atomic_exchange(&b->store_low, true))
            log_error("store: %llu MiB free on its filesystem, below store_min_free (%llu "
                      "MiB): refusing QoS 1/2 messages until there is more",
                      (unsigned long long)(free_bytes >> 20), (unsigned long long)(min >> 20));
    } else if (free_bytes >= min + min / 8 && atomic_load(&b->store_low)) {
        if (atomic_exchange(&b->store_low, false))
            log_notice("store: %llu MiB free again, accepting QoS 1/2 messages",
                       (unsigned long long)(free_bytes >> 20));
    }
    /* The engine stops after a failed write and is reopened once there is
     * room again (store.h); until then commits fail and the probe in
     * persist_commit keeps QoS 1/2 messages refused. */
    if (store_needs_recovery(b->store) && !atomic_load(&b->store_low)) {
        char err[512];
        int rc = store_recover(b->store, err, sizeof(err));
        if (rc > 0)
            log_notice("store: engine reopened after its failure");
        else if (rc < 0 && !atomic_exchange(&b->store_reopen_failed, true))
            log_error("%s: trying again every second", err);
        if (rc > 0)
            atomic_store(&b->store_reopen_failed, false);
    }
}

static void pending_clear(struct worker *w);
static void commit_once(struct worker *w, bool force);

void persist_commit(struct worker *w, bool force)
{
    commit_once(w, force);
    /* After the commit: a SUBSCRIBE on another worker that saw this one
     * with a retained message pending waits for this (retained barrier). */
    atomic_store(&w->retained_dirty, false);
    atomic_fetch_add(&w->commits, 1);
}

static void commit_once(struct worker *w, bool force)
{
    if (!on(w))
        return;
    if (w->store_bytes >= SPACE_CHECK_BYTES || w->now >= w->next_space_check)
        check_space(w);
    const struct config *cf = w->broker->conf;
    bool periodic = cf->durability == DURABILITY_PERIODIC;
    bool due = force || w->now >= w->next_sync;
    bool probe = store_batch_count(w->batch) == 0;
    char err[512];
    if (probe) {
        if (atomic_load(&w->broker->store_failed) && due) {
            /* While failing nothing is written: probe now and then. */
            uint8_t k[1], v[8];
            size_t klen = rec_key_meta(k);
            batch_put(w, k, klen, v, rec_meta_encode(v, sizeof(v)));
        } else if (periodic && due && w->store_unsynced) {
            /* Written in earlier iterations, not yet on stable storage. */
            w->next_sync = w->now + cf->durability_interval;
            w->store_unsynced = false;
            if (store_sync(w->broker->store, err, sizeof(err)) < 0)
                log_error("%s", err);
            return;
        } else {
            return;
        }
    }
    /* Every iteration's batch is written (so that a delivery handed to
     * another worker is in the store before that worker can delete it);
     * what differs is when the write-ahead log is fsynced: sync, before
     * the iteration's acknowledgements leave when the batch holds a
     * promise; periodic, every durability_interval. */
    bool sync = periodic ? due : w->store_sync;
    w->store_sync = false;
    if (sync || probe) {
        w->next_sync = w->now + cf->durability_interval;
        w->store_unsynced = false;
    } else {
        w->store_unsynced = true;
    }
    w->store_bytes += store_batch_bytes(w->batch);
    int committed = store_commit(w->broker->store, w->batch, sync, err, sizeof(err));
    pending_clear(w);
    if (committed == 0) {
        if (atomic_exchange(&w->broker->store_failed, 0))
            log_notice("store writable again");
        return;
    }
    uint8_t rc = strstr(err, "No space") ? MQTT_RC_QUOTA_EXCEEDED : MQTT_RC_UNSPECIFIED;
    if (!atomic_exchange(&w->broker->store_failed, rc))
        log_error("%s: refusing QoS 1/2 messages until it succeeds", err);
    /* What this iteration acknowledged is not stored: those clients must
     * not see the acknowledgements, and will send again. (A failed probe
     * carried nothing anybody is waiting for.) */
    if (!probe)
        worker_drop_output(w);
}

uint8_t persist_failing(const struct worker *w)
{
    uint8_t rc = atomic_load_explicit(&w->broker->store_failed, memory_order_relaxed);
    if (!rc && atomic_load_explicit(&w->broker->store_low, memory_order_relaxed))
        rc = MQTT_RC_QUOTA_EXCEEDED;
    return rc;
}

void persist_close(struct broker *b)
{
    if (!b->store)
        return;
    for (int i = 0; i < b->worker_count; i++)
        if (b->workers[i])
            persist_commit(b->workers[i], true);
    store_close(b->store);
    b->store = NULL;
}

/* ---- sessions and subscriptions --------------------------------------- */

void persist_session(struct worker *w, struct session *s)
{
    if (!on(w))
        return;
    if (!atomic_load_explicit(&s->persistent, memory_order_relaxed)) {
        if (s->stored)
            persist_session_delete(w, s);
        return;
    }
    struct rec_session r = {
        .expiry = s->expiry,
        .version = s->version,
        .connected = s->conn != NULL,
    };
    if (!s->conn && s->expire_at)
        r.expire_at = wall_of_mono(s->expire_at);
    if (s->will) {
        r.has_will = true;
        r.will_delay = s->will_delay;
        r.will_expiry = s->will_expiry;
        r.will_at = s->will_at ? wall_of_mono(s->will_at) : 0;
        rec_from_message(&r.will, s->will);
    }
    size_t klen = rec_key_session(key_buf, s->client_id, s->client_id_len);
    put_value(w, key_buf, klen, enc_session, &r);
    s->stored = true;
}

static void unref_stored(struct worker *w, struct message *m)
{
    pthread_mutex_t *mu = stripe_of(m);
    pthread_mutex_lock(mu);
    uint64_t id = 0;
    if (atomic_fetch_sub_explicit(&m->store_refs, 1, memory_order_relaxed) == 1) {
        if (atomic_exchange_explicit(&m->store_written, false, memory_order_relaxed))
            id = atomic_load_explicit(&m->store_id, memory_order_relaxed);
        atomic_store_explicit(&m->store_id, 0, memory_order_relaxed);
    }
    pthread_mutex_unlock(mu);
    if (id) {
        uint8_t k[16];
        store_batch_delete(w->batch, k, rec_key_message(k, id));
    }
}

void persist_session_delete(struct worker *w, struct session *s)
{
    if (!on(w) || !s->stored)
        return;
    /* A session that goes on without being stored (a new connection with
     * expiry 0) keeps its queue: what was on disk only comes back first. */
    if (s->cold_count && !s->dead && persist_refill(w, s, UINT32_MAX) < 0)
        session_cold_lost(s);
    size_t klen = rec_key_session(key_buf, s->client_id, s->client_id_len);
    store_batch_delete(w->batch, key_buf, klen);
    static const uint8_t kinds[] = {REC_SUB, REC_DELIVERY, REC_COLD, REC_QOS2_IN};
    for (size_t i = 0; i < sizeof(kinds); i++) {
        size_t lolen, hilen;
        rec_key_client_range(key_buf, &lolen, key_end_buf, &hilen, kinds[i], s->client_id,
                             s->client_id_len);
        store_batch_delete_range(w->batch, key_buf, lolen, key_end_buf, hilen);
    }
    struct delivery_ring *rings[2] = {&s->inflight, &s->queue};
    for (int r = 0; r < 2; r++) {
        for (uint32_t i = 0; i < rings[r]->count; i++) {
            struct delivery *d = ring_at(rings[r], i);
            if (d->seq) {
                if (r == 1) { /* no longer counted against store_queue_memory */
                    uint64_t n = session_delivery_mem(d);
                    s->queue_mem -= n;
                    s->worker->queue_mem -= n;
                }
                unref_stored(w, d->msg);
                d->seq = 0;
            }
        }
    }
    s->stored = false;
}

static uint8_t opts_byte(const struct mqtt_sub_opts *o)
{
    return (uint8_t)(o->qos | (o->no_local ? 0x04 : 0) | (o->retain_as_published ? 0x08 : 0) |
                     (o->retain_handling << 4));
}

void persist_sub(struct worker *w, struct session *s, const uint8_t *filter, size_t len,
                 const struct mqtt_sub_opts *o, uint32_t sub_id)
{
    if (!on(w) || !atomic_load_explicit(&s->persistent, memory_order_relaxed))
        return;
    struct rec_sub r = {.options = opts_byte(o), .sub_id = sub_id};
    size_t klen = rec_key_sub(key_buf, s->client_id, s->client_id_len, (const char *)filter,
                              len);
    put_value(w, key_buf, klen, enc_sub, &r);
}

void persist_unsub(struct worker *w, struct session *s, const uint8_t *filter, size_t len)
{
    if (!on(w) || !s->stored)
        return;
    size_t klen = rec_key_sub(key_buf, s->client_id, s->client_id_len, (const char *)filter,
                              len);
    store_batch_delete(w->batch, key_buf, klen);
}

/* ---- deliveries --------------------------------------------------------- */

_Static_assert(DELIVERY_INLINE == REC_DELIVERY_INLINE, "stored delivery flags");

static void put_delivery(struct worker *w, uint8_t kind, struct session *s,
                         const struct delivery *d, uint64_t msg_id)
{
    struct rec_delivery r = {
        .msg_id = msg_id,
        .qos = d->qos,
        .flags = d->flags,
        .packet_id = d->packet_id,
        .sub_id_count = d->sub_id_count,
    };
    memcpy(r.sub_ids, d->sub_ids, sizeof(r.sub_ids));
    if (d->flags & DELIVERY_INLINE)
        rec_from_message(&r.message, d->msg);
    size_t klen = rec_key_delivery(key_buf, kind, s->client_id, s->client_id_len, d->seq);
    put_value(w, key_buf, klen, enc_delivery, &r);
}

void persist_delivery_new(struct worker *w, struct session *s, struct delivery *d)
{
    persist_delivery_new_at(w, s, d, 0);
}

uint64_t persist_reserve_seqs(struct worker *w, struct session *s, size_t n)
{
    if (!on(w) || !n || !atomic_load_explicit(&s->persistent, memory_order_relaxed))
        return 0;
    return atomic_fetch_add(&w->broker->store_seq, n) + 1;
}

void persist_delivery_new_at(struct worker *w, struct session *s, struct delivery *d,
                             uint64_t seq)
{
    if (!on(w) || d->qos == 0 || !atomic_load_explicit(&s->persistent, memory_order_relaxed))
        return;
    struct message *m = d->msg;
    struct broker *b = w->broker;
    /* The first stored delivery of a message carries it (one record for
     * the common case of one persistent destination); a second one gets
     * the message its own M record to refer to. */
    pthread_mutex_t *mu = stripe_of(m);
    pthread_mutex_lock(mu);
    uint64_t id = atomic_load_explicit(&m->store_id, memory_order_relaxed);
    bool first = id == 0, write = false;
    if (first) {
        id = atomic_fetch_add(&b->store_seq, 1) + 1;
        atomic_store_explicit(&m->store_id, id, memory_order_relaxed);
    } else if (!atomic_load_explicit(&m->store_written, memory_order_relaxed)) {
        atomic_store_explicit(&m->store_written, true, memory_order_relaxed);
        write = true;
    }
    atomic_fetch_add_explicit(&m->store_refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(mu);
    if (write) {
        struct rec_message r;
        rec_from_message(&r, m);
        uint8_t k[16];
        put_value(w, k, rec_key_message(k, id), enc_message, &r);
    }
    if (first)
        d->flags |= DELIVERY_INLINE;
    else
        d->flags &= (uint8_t)~DELIVERY_INLINE;
    d->seq = seq ? seq : atomic_fetch_add(&b->store_seq, 1) + 1;
    /* Sent in the same iteration (its session is on this worker and has
     * room): persist_delivery_update replaces this put instead of adding
     * a second record for the engine to sort and drop. A session of
     * another worker is updated in that worker's batch: no mark. */
    if (s->worker != w) {
        put_delivery(w, REC_DELIVERY, s, d, id);
        return;
    }
    store_batch_mark(w->batch);
    put_delivery(w, REC_DELIVERY, s, d, id);
    w->batch_last_seq = d->seq;
    w->batch_last_count = store_batch_count(w->batch);
}

void persist_delivery_update(struct worker *w, struct session *s, const struct delivery *d)
{
    if (!on(w) || !d->seq)
        return;
    if (w->batch_last_seq == d->seq && store_batch_count(w->batch) == w->batch_last_count)
        (void)store_batch_undo(w->batch);
    w->batch_last_seq = 0;
    put_delivery(w, REC_DELIVERY, s, d, atomic_load_explicit(&d->msg->store_id, memory_order_relaxed));
}

void persist_delivery_done(struct worker *w, struct session *s, struct delivery *d)
{
    if (!on(w) || !d->seq)
        return;
    size_t klen = rec_key_delivery(key_buf, REC_DELIVERY, s->client_id, s->client_id_len, d->seq);
    store_batch_delete(w->batch, key_buf, klen);
    unref_stored(w, d->msg);
    d->seq = 0;
}

void persist_delivery_spill(struct worker *w, struct session *s, struct delivery *d)
{
    if (!on(w) || !d->seq)
        return;
    size_t klen = rec_key_delivery(key_buf, REC_DELIVERY, s->client_id, s->client_id_len,
                                   d->seq);
    store_batch_delete(w->batch, key_buf, klen);
    /* Self-contained on disk: it carries its message, and refers to no
     * M record (the message may be gone from memory by the time it is
     * read back). */
    struct delivery cold = *d;
    cold.flags |= DELIVERY_INLINE;
    put_delivery(w, REC_COLD, s, &cold, 0);
    unref_stored(w, d->msg);
    d->seq = 0;
}

struct refill {
    struct worker *w;
    struct session *s;
    uint32_t max, n;
};

static int refill_one(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen, void *arg)
{
    struct refill *R = arg;
    struct worker *w = R->w;
    struct session *s = R->s;
    if (R->n >= R->max)
        return 1;
    struct rec_key key;
    struct rec_delivery r;
    if (!rec_key_decode(k, klen, &key) || !rec_delivery_decode(v, vlen, &r) || r.qos == 0 ||
        !(r.flags & REC_DELIVERY_INLINE)) {
        log_warning("store: dropping a damaged queued message of %s", s->client_id);
        store_batch_delete(w->batch, k, klen);
        s->cold_count--;
        if (rec_delivery_decode(v, vlen, &r) && (r.flags & REC_DELIVERY_INLINE) &&
            s->queued_bytes >= r.message.payload_len)
            s->queued_bytes -= r.message.payload_len;
        return 0;
    }
    struct message *m = message_from_rec(&r.message);
    if (!m)
        return -1;
    /* A message object of its own, with a fresh id: the delivery record
     * goes back to Q, carrying it. */
    uint64_t id = atomic_fetch_add(&w->broker->store_seq, 1) + 1;
    atomic_store_explicit(&m->store_id, id, memory_order_relaxed);
    atomic_store_explicit(&m->store_refs, 1, memory_order_relaxed);
    struct delivery d = {
        .msg = m,
        .seq = key.num,
        .qos = r.qos,
        .flags = r.flags,
        .sub_id_count = r.sub_id_count,
    };
    memcpy(d.sub_ids, r.sub_ids, sizeof(d.sub_ids));
    if (session_refill_push(w, s, &d) < 0) {
        message_unref(m);
        return -1;
    }
    store_batch_delete(w->batch, k, klen);
    put_delivery(w, REC_DELIVERY, s, &d, id);
    s->cold_next = key.num + 1;
    R->n++;
    return 0;
}

int persist_refill(struct worker *w, struct session *s, uint32_t max)
{
    if (!on(w) || !s->cold_count)
        return 0;
    /* What this iteration spilled must be visible to the read. */
    persist_commit(w, false);
    /* From the lowest sequence number still on disk (not over the records
     * already read back), within the client's C keys. Both keys are in the
     * buffer the callback does not write. */
    size_t plen = rec_key_delivery(key_end_buf, REC_COLD, s->client_id, s->client_id_len, 0);
    size_t from_off = plen, flen;
    flen = rec_key_delivery(key_end_buf + from_off, REC_COLD, s->client_id, s->client_id_len,
                            s->cold_next);
    plen -= 8; /* kind, client id */
    struct refill R = {.w = w, .s = s, .max = max};
    int rc = store_scan_from(w->broker->store, key_end_buf, plen, key_end_buf + from_off, flen,
                             refill_one, &R);
    if (rc < 0)
        log_error("store: cannot read the queued messages of %s back", s->client_id);
    if (R.n == 0 && rc >= 0 && s->cold_count) {
        log_warning("store: %llu queued messages of %s not found on disk",
                    (unsigned long long)s->cold_count, s->client_id);
        session_cold_lost(s);
    }
    return rc < 0 ? -1 : (int)R.n;
}

void persist_qos2_in(struct worker *w, struct session *s, uint16_t pid, bool add)
{
    if (!on(w) || !atomic_load_explicit(&s->persistent, memory_order_relaxed))
        return;
    size_t klen = rec_key_qos2(key_buf, s->client_id, s->client_id_len, pid);
    if (add)
        batch_put(w, key_buf, klen, "", 0);
    else
        store_batch_delete(w->batch, key_buf, klen);
}

void persist_delayed(struct worker *w, struct delayed_msg *item)
{
    if (!on(w))
        return;
    item->store_due = wall_of_mono(item->due);
    item->store_id = atomic_fetch_add(&w->broker->store_seq, 1) + 1;
    struct rec_message r;
    rec_from_message(&r, item->msg);
    uint8_t k[32];
    put_value(w, k, rec_key_delayed(k, item->store_due, item->store_id), enc_message, &r);
}

void persist_delayed_done(struct worker *w, const struct delayed_msg *item)
{
    if (!on(w) || !item->store_id)
        return;
    uint8_t k[32];
    store_batch_delete(w->batch, k, rec_key_delayed(k, item->store_due, item->store_id));
}

/* ---- retained messages ------------------------------------------------- */

/* With a store, clients' retained messages live in R records only, so that
 * memory stays flat however many there are; a SUBSCRIBE reads them back a
 * chunk at a time (persist_retained_scan). The broker's own $SYS topics
 * stay in the in-memory trie (retain.c), as does everything without a
 * store. broker->retained_stored counts the R records: whether a topic
 * had one is looked up in what this worker has not committed yet
 * (w->retained_pending, emptied by each commit), then in the store. */

struct pending_topic {
    struct level_key key; /* first: the table points at it */
    bool present;
    uint8_t topic[];
};

static bool is_sys(const struct message *m)
{
    return m->topic_len >= 4 && memcmp(m->topic, "$SYS", 4) == 0;
}

static struct pending_topic *pending_find(struct worker *w, const struct message *m,
                                          uint32_t h)
{
    return (struct pending_topic *)level_find(&w->retained_pending, h,
                                              (const uint8_t *)m->topic, m->topic_len);
}

static void pending_clear(struct worker *w)
{
    struct level_key *k;
    while ((k = level_pop(&w->retained_pending)))
        free(k);
    level_table_free(&w->retained_pending);
}

bool persist_retained_on_disk(const struct worker *w)
{
    return on(w);
}

uint64_t *persist_retained_barrier(struct worker *w)
{
    struct broker *b = w->broker;
    uint64_t *bar = NULL;
    for (int i = 0; i < b->worker_count; i++) {
        struct worker *o = b->workers[i];
        /* Commit count first: if the flag is seen set, the commit that
         * clears it comes after the count read. */
        uint64_t c = atomic_load(&o->commits);
        if (!atomic_load(&o->retained_dirty))
            continue;
        if (!bar) {
            bar = malloc((size_t)b->worker_count * sizeof(*bar));
            if (!bar)
                return NULL;
            for (int j = 0; j < b->worker_count; j++)
                bar[j] = UINT64_MAX;
        }
        bar[i] = c;
    }
    return bar;
}

bool persist_retained_barrier_passed(struct worker *w, const uint64_t *bar)
{
    struct broker *b = w->broker;
    for (int i = 0; i < b->worker_count; i++)
        if (bar[i] != UINT64_MAX && atomic_load(&b->workers[i]->commits) <= bar[i])
            return false;
    return true;
}

void persist_retain(struct worker *w, struct message *m)
{
    if (!on(w) || is_sys(m)) {
        retain_set(w->broker->retain, m);
        return;
    }
    /* Before the message is routed: see persist_retained_barrier. */
    atomic_store(&w->retained_dirty, true);
    if (!w->retained_seed)
        w->retained_seed = level_seed(w) | 1;
    uint32_t h = level_hash(w->retained_seed, (const uint8_t *)m->topic, m->topic_len);
    struct pending_topic *p = pending_find(w, m, h);
    bool had;
    size_t klen = rec_key_retained(key_buf, m->topic, m->topic_len);
    if (p) {
        had = p->present;
    } else {
        uint8_t *v = NULL;
        size_t vlen = 0;
        had = store_get(w->broker->store, key_buf, klen, &v, &vlen) > 0;
        free(v);
        p = malloc(sizeof(*p) + m->topic_len);
        if (p) {
            memcpy(p->topic, m->topic, m->topic_len);
            p->key = (struct level_key){.hval = h, .len = m->topic_len, .bytes = p->topic};
            if (level_add(&w->retained_pending, &p->key) < 0) {
                free(p);
                p = NULL;
            }
        }
    }
    bool present = m->payload_len > 0;
    if (p)
        p->present = present;
    if (present && !had) {
        atomic_fetch_add(&w->broker->retained_stored, 1);
    } else if (!present && had) {
        /* Two workers may both count the same topic's clearing: never
         * below zero. */
        size_t n = atomic_load(&w->broker->retained_stored);
        while (n && !atomic_compare_exchange_weak(&w->broker->retained_stored, &n, n - 1))
            ;
    }
    if (!present) {
        store_batch_delete(w->batch, key_buf, klen);
        return;
    }
    struct rec_message r;
    rec_from_message(&r, m);
    /* A QoS 0 retained message promises nothing to its publisher: it
     * does not make the commit wait for the disk. */
    bool sync = w->store_sync;
    put_value(w, key_buf, klen, enc_message, &r);
    if (m->qos == 0)
        w->store_sync = sync;
}

/* The filter's part before its first wildcard level, which every matching
 * topic starts with: "a/b/+/c" gives "a/b/", "a/b/#" gives "a/b" (the
 * filter matches "a/b" itself), "#" and "+/x" give nothing. */
static size_t literal_prefix(const uint8_t *f, size_t flen, bool *exact)
{
    size_t level = 0;
    for (size_t i = 0; i <= flen; i++) {
        if (i == flen) {
            *exact = true;
            return flen;
        }
        if (f[i] == '/') {
            level = i + 1;
        } else if (f[i] == '+' || f[i] == '#') {
            *exact = false;
            return f[i] == '#' && level > 0 ? level - 1 : level;
        }
    }
    return flen;
}

struct scan {
    struct retained_scan *rs;
    void (*add)(void *arg, struct message *m);
    void *arg;
    size_t keys, matches, max_keys, max_matches;
    uint64_t now;
};

static int scan_one(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen, void *arg)
{
    struct scan *S = arg;
    struct retained_scan *rs = S->rs;
    S->keys++;
    /* Where to go on from: just after this key. */
    if (klen + 1 > rs->at_cap) {
        uint8_t *a = realloc(rs->at, klen + 1);
        if (!a)
            return -1;
        rs->at = a;
        rs->at_cap = klen + 1;
    }
    memcpy(rs->at, k, klen);
    rs->at[klen] = 0;
    rs->at_len = klen + 1;
    struct rec_message r;
    if (topic_matches(rs->filter, rs->filter_len, k + 1, klen - 1) &&
        rec_message_decode(v, vlen, &r) && !(r.expiry_at && r.expiry_at <= S->now)) {
        struct message *m = message_from_rec(&r);
        if (m) {
            S->add(S->arg, m);
            S->matches++;
        }
    }
    return S->keys >= S->max_keys || S->matches >= S->max_matches;
}

int persist_retained_scan(struct worker *w, struct retained_scan *rs, size_t max_keys,
                          size_t max_matches, void (*add)(void *arg, struct message *m),
                          void *arg)
{
    if (rs->done)
        return 0;
    struct store *st = w->broker->store;
    if (!st) {
        rs->done = true;
        return 0;
    }
    bool exact;
    size_t plen = literal_prefix(rs->filter, rs->filter_len, &exact);
    uint8_t *prefix = malloc(plen + 1);
    if (!prefix)
        return -1;
    prefix[0] = REC_RETAINED;
    memcpy(prefix + 1, rs->filter, plen);
    struct scan S = {.rs = rs, .add = add, .arg = arg, .max_keys = max_keys,
                     .max_matches = max_matches, .now = clock_wall_ms()};
    int rc;
    if (exact) {
        /* One topic: one lookup. */
        uint8_t *v = NULL;
        size_t vlen = 0;
        rc = store_get(st, prefix, plen + 1, &v, &vlen);
        if (rc > 0)
            rc = scan_one(prefix, plen + 1, v, vlen, &S) < 0 ? -1 : 0;
        free(v);
        rs->done = rc >= 0;
    } else if (rs->at_len) {
        rc = store_scan_from(st, prefix, plen + 1, rs->at, rs->at_len, scan_one, &S);
    } else {
        rc = store_scan(st, prefix, plen + 1, scan_one, &S);
    }
    free(prefix);
    if (rc < 0) {
        log_error("store: cannot read retained messages for %.*s", (int)rs->filter_len,
                  (const char *)rs->filter);
        rs->done = true;
        return -1;
    }
    if (rc == 0)
        rs->done = true;
    return (int)S.matches;
}

void persist_retained_scan_free(struct retained_scan *rs)
{
    free(rs->at);
    free(rs->filter);
    memset(rs, 0, sizeof(*rs));
}

/* ---- loading ------------------------------------------------------------ */

struct loaded_msg {
    uint64_t id;
    struct message *m;
};

struct load {
    struct broker *b;
    struct store_batch *fix;     /* deletes of what cannot be used */
    uint64_t now_wall, now_mono;
    uint64_t max_id;
    struct loaded_msg *msgs;     /* sorted by id (the store's key order) */
    size_t msg_count, msg_cap;
    size_t sessions, subs, deliveries, cold, qos2, retained, delayed, dropped;
};

static void drop_record(struct load *L, const uint8_t *k, size_t klen, const char *why)
{
    L->dropped++;
    log_warning("store: dropping a record (%s)", why);
    store_batch_delete(L->fix, k, klen);
}

static struct session *find_session(struct load *L, const char *cid, size_t len)
{
    struct broker *b = L->b;
    int wi = broker_worker_for(b, (const uint8_t *)cid, len);
    uint32_t hash = hash_bytes(cid, len, b->hash_seed);
    return session_table_find(&b->workers[wi]->sessions, (const uint8_t *)cid, len, hash);
}

/* The session a client record belongs to; a record whose session is gone
 * (it ended while the record was being written) is deleted. */
static struct session *owner_of(struct load *L, const uint8_t *k, size_t klen,
                                const struct rec_key *key)
{
    struct session *s = find_session(L, key->cid, key->cid_len);
    if (!s)
        store_batch_delete(L->fix, k, klen);
    return s;
}

static uint64_t mono_of_wall(const struct load *L, uint64_t wall)
{
    return wall > L->now_wall ? L->now_mono + (wall - L->now_wall) : L->now_mono;
}

static int load_session(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen, void *arg)
{
    struct load *L = arg;
    struct rec_key key;
    struct rec_session r;
    if (!rec_key_decode(k, klen, &key) || key.kind != REC_SESSION ||
        !rec_session_decode(v, vlen, &r)) {
        drop_record(L, k, klen, "damaged session");
        return 0;
    }
    struct broker *b = L->b;
    int wi = broker_worker_for(b, (const uint8_t *)key.cid, key.cid_len);
    struct worker *w = b->workers[wi];
    uint32_t hash = hash_bytes(key.cid, key.cid_len, b->hash_seed);
    struct session *s = session_new(w, (const uint8_t *)key.cid, key.cid_len, hash);
    if (!s)
        return -1;
    s->expiry = r.expiry;
    s->version = r.version;
    s->stored = true;
    atomic_store_explicit(&s->persistent, true, memory_order_relaxed);
    /* A client connected when the broker stopped lost its connection
     * then: expiry counts from this start. A session that expired while
     * the broker was down is due at once: the first tick publishes its
     * will, if any, and ends it, once every subscription is loaded. */
    if (r.connected) {
        if (s->expiry != SESSION_EXPIRY_NEVER)
            s->expire_at = L->now_mono + (uint64_t)s->expiry * 1000u;
    } else if (r.expire_at) {
        s->expire_at = mono_of_wall(L, r.expire_at);
    }
    if (r.has_will) {
        s->will = message_from_rec(&r.will);
        s->will_delay = r.will_delay;
        s->will_expiry = r.will_expiry;
        /* will_at 0 means no will is waiting; 1 ms later than due is
         * close enough and keeps it non-zero. */
        if (r.connected)
            s->will_at = L->now_mono + (uint64_t)r.will_delay * 1000u + 1;
        else if (r.will_at)
            s->will_at = mono_of_wall(L, r.will_at) + 1;
        else if (s->expire_at && s->expire_at <= L->now_mono)
            s->will_at = L->now_mono + 1; /* delay longer than the session */
    }
    L->sessions++;
    return 0;
}

static int load_sub(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen, void *arg)
{
    struct load *L = arg;
    struct rec_key key;
    struct rec_sub r;
    if (!rec_key_decode(k, klen, &key) || !rec_sub_decode(v, vlen, &r)) {
        drop_record(L, k, klen, "damaged subscription");
        return 0;
    }
    struct session *s = owner_of(L, k, klen, &key);
    if (!s)
        return 0;
    struct mqtt_sub_opts o = {
        .qos = r.options & 3,
        .no_local = (r.options & 0x04) != 0,
        .retain_as_published = (r.options & 0x08) != 0,
        .retain_handling = (r.options >> 4) & 3,
    };
    if (o.qos > 2 || router_subscribe(L->b->router, (const uint8_t *)key.name, key.name_len, s,
                                      &o, r.sub_id) < 0 ||
        session_sub_add(s, (const uint8_t *)key.name, key.name_len) < 0) {
        drop_record(L, k, klen, "subscription not restorable");
        return 0;
    }
    L->subs++;
    return 0;
}

/* Decode a record whose value is a message (M, D) and keep the id counter
 * above its id; false when it is damaged (then dropped). */
static bool decode_message_record(struct load *L, const uint8_t *k, size_t klen,
                                  const uint8_t *v, size_t vlen, struct rec_key *key,
                                  struct rec_message *r, const char *what)
{
    if (!rec_key_decode(k, klen, key) || !rec_message_decode(v, vlen, r)) {
        drop_record(L, k, klen, what);
        return false;
    }
    uint64_t id = key->kind == REC_DELAYED ? key->num2 : key->num;
    if (id > L->max_id)
        L->max_id = id;
    return true;
}

static int load_message(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen, void *arg)
{
    struct load *L = arg;
    struct rec_key key;
    struct rec_message r;
    if (!decode_message_record(L, k, klen, v, vlen, &key, &r, "damaged message"))
        return 0;
    struct message *m = message_from_rec(&r);
    if (!m)
        return -1;
    atomic_store_explicit(&m->store_id, key.num, memory_order_relaxed);
    atomic_store_explicit(&m->store_written, true, memory_order_relaxed);
    if (L->msg_count == L->msg_cap) {
        size_t cap = L->msg_cap ? L->msg_cap * 2 : 1024;
        struct loaded_msg *a = realloc(L->msgs, cap * sizeof(*a));
        if (!a) {
            message_unref(m);
            return -1;
        }
        L->msgs = a;
        L->msg_cap = cap;
    }
    L->msgs[L->msg_count++] = (struct loaded_msg){key.num, m};
    return 0;
}

static struct message *loaded(struct load *L, uint64_t id)
{
    size_t lo = 0, hi = L->msg_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (L->msgs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < L->msg_count && L->msgs[lo].id == id ? L->msgs[lo].m : NULL;
}

/* Decode a delivery record (Q, C) and find its session: NULL when it is
 * damaged or its session is gone (then dropped). A C record must carry
 * its message. */
static struct session *decode_delivery_record(struct load *L, const uint8_t *k, size_t klen,
                                              const uint8_t *v, size_t vlen,
                                              struct rec_key *key, struct rec_delivery *r)
{
    if (!rec_key_decode(k, klen, key) || !rec_delivery_decode(v, vlen, r) || r->qos == 0 ||
        (key->kind == REC_COLD && !(r->flags & REC_DELIVERY_INLINE))) {
        drop_record(L, k, klen, "damaged delivery");
        return NULL;
    }
    if (key->num > L->max_id)
        L->max_id = key->num;
    return owner_of(L, k, klen, key);
}

static int load_delivery(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen, void *arg)
{
    struct load *L = arg;
    struct rec_key key;
    struct rec_delivery r;
    struct session *s = decode_delivery_record(L, k, klen, v, vlen, &key, &r);
    if (!s)
        return 0;
    /* A message carried inline may also have an M record (written for a
     * second delivery): then both refer to that one. */
    struct message *m = loaded(L, r.msg_id), *own = NULL;
    if (!m && (r.flags & REC_DELIVERY_INLINE)) {
        m = own = message_from_rec(&r.message);
        if (!m)
            return -1;
        atomic_store_explicit(&m->store_id, r.msg_id, memory_order_relaxed);
    }
    if (!m) {
        drop_record(L, k, klen, "delivery of a missing message");
        return 0;
    }
    if (r.msg_id > L->max_id)
        L->max_id = r.msg_id;
    struct delivery d = {
        .msg = own ? own : message_ref(m),
        .seq = key.num,
        .packet_id = r.packet_id,
        .qos = r.qos,
        .flags = r.flags,
        .sub_id_count = r.sub_id_count,
    };
    memcpy(d.sub_ids, r.sub_ids, sizeof(d.sub_ids));
    atomic_fetch_add_explicit(&m->store_refs, 1, memory_order_relaxed);
    if (session_restore_delivery(s, &d) < 0) {
        atomic_fetch_sub_explicit(&m->store_refs, 1, memory_order_relaxed);
        message_unref(m);
        return -1;
    }
    L->deliveries++;
    return 0;
}

/* Queued deliveries kept on disk only are counted, not read: they come
 * back when their session is sending (persist_refill). */
static int load_cold(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen, void *arg)
{
    struct load *L = arg;
    struct rec_key key;
    struct rec_delivery r;
    struct session *s = decode_delivery_record(L, k, klen, v, vlen, &key, &r);
    if (!s)
        return 0;
    if (!s->cold_count || key.num < s->cold_next)
        s->cold_next = key.num;
    s->cold_count++;
    s->queued_bytes += r.message.payload_len;
    session_queue_mirror(s);
    L->cold++;
    return 0;
}

static int load_qos2(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen, void *arg)
{
    struct load *L = arg;
    struct rec_key key;
    (void)v;
    (void)vlen;
    if (!rec_key_decode(k, klen, &key)) {
        drop_record(L, k, klen, "damaged QoS 2 state");
        return 0;
    }
    struct session *s = owner_of(L, k, klen, &key);
    if (!s)
        return 0;
    if (session_qos2_add(s, (uint16_t)key.num) < 0)
        return -1;
    L->qos2++;
    return 0;
}

static int load_delayed(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                        void *arg)
{
    struct load *L = arg;
    struct rec_key key;
    struct rec_message r;
    if (!decode_message_record(L, k, klen, v, vlen, &key, &r, "damaged delayed publish"))
        return 0;
    struct message *m = message_from_rec(&r);
    if (!m)
        return -1;
    /* Due while the broker was down: published as soon as it runs. */
    struct delayed_msg item = {
        .due = mono_of_wall(L, key.num),
        .msg = m,
        .store_due = key.num,
        .store_id = key.num2,
    };
    struct broker *b = L->b;
    worker_delay_restore(b->workers[key.num2 % (uint64_t)b->worker_count], &item);
    L->delayed++;
    return 0;
}

static int load_retained(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                         void *arg)
{
    struct load *L = arg;
    struct rec_key key;
    struct rec_message r;
    if (!rec_key_decode(k, klen, &key) || !rec_message_decode(v, vlen, &r) ||
        r.topic_len != key.name_len || memcmp(r.topic, key.name, key.name_len) != 0) {
        drop_record(L, k, klen, "damaged retained message");
        return 0;
    }
    if (r.expiry_at && r.expiry_at <= L->now_wall) {
        store_batch_delete(L->fix, k, klen);
        return 0;
    }
    /* They stay on disk (persist_retain): only counted. */
    L->retained++;
    return 0;
}

int persist_load(struct broker *b)
{
    if (!b->store)
        return 0;
    for (int i = 0; i < b->worker_count; i++) {
        b->workers[i]->batch = store_batch_new(b->store);
        if (!b->workers[i]->batch) {
            log_error("store: out of memory");
            return -1;
        }
    }
    struct load L = {.b = b, .now_wall = clock_wall_ms(), .now_mono = clock_mono_ms()};
    L.fix = store_batch_new(b->store);
    if (!L.fix)
        return -1;
    uint64_t t0 = clock_mono_ms();
    static const struct {
        uint8_t kind;
        store_scan_fn fn;
    } passes[] = {
        {REC_SESSION, load_session}, {REC_SUB, load_sub},         {REC_MESSAGE, load_message},
        {REC_DELIVERY, load_delivery}, {REC_COLD, load_cold},       {REC_QOS2_IN, load_qos2},
        {REC_RETAINED, load_retained}, {REC_DELAYED, load_delayed},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof(passes) / sizeof(passes[0]) && rc == 0; i++) {
        uint8_t prefix = passes[i].kind;
        rc = store_scan(b->store, &prefix, 1, passes[i].fn, &L);
    }
    /* Messages no delivery refers to any more. */
    for (size_t i = 0; i < L.msg_count; i++) {
        struct message *m = L.msgs[i].m;
        if (rc == 0 && atomic_load_explicit(&m->store_refs, memory_order_relaxed) == 0) {
            uint8_t k[16];
            store_batch_delete(L.fix, k, rec_key_message(k, L.msgs[i].id));
            atomic_store_explicit(&m->store_id, 0, memory_order_relaxed);
        }
        message_unref(m);
    }
    free(L.msgs);
    atomic_store(&b->store_seq, L.max_id);
    char err[512];
    if (rc == 0 && store_commit(b->store, L.fix, true, err, sizeof(err)) < 0) {
        log_error("%s", err);
        rc = -1;
    }
    store_batch_free(L.fix);
    atomic_store(&b->retained_stored, L.retained);
    if (rc != 0) {
        log_error("cannot read the store: it is damaged or unreadable");
        return -1;
    }
    log_notice("store loaded in %llu ms: %zu sessions, %zu subscriptions, %zu queued or in "
               "flight (and %zu queued on disk only), %zu QoS 2 in progress, %zu retained, "
               "%zu delayed%s",
               (unsigned long long)(clock_mono_ms() - t0), L.sessions, L.subs, L.deliveries,
               L.cold, L.qos2, L.retained, L.delayed,
               L.dropped ? " (damaged records dropped, see above)" : "");
    return 0;
}
