/* session.c - session state and the outbound half of the protocol:
 * queueing, the in-flight window, packet identifiers, redelivery, wills and
 * expiry. Runs only on the session's owner worker.
 *
 * In-flight and queued messages are rings of struct delivery in send order.
 * Acknowledgements almost always name the oldest in-flight message, so the
 * lookup by packet id scans from the head and usually stops at once; the
 * worst case is O(window), with the window bounded by Receive Maximum.
 */
#include "broker/session.h"

#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "auth/acl.h"
#include "broker/message.h"
#include "broker/persist.h"
#include "broker/retain.h"
#include "broker/router.h"
#include "mqtt/codec.h"
#include "net/conn.h"
#include "net/worker.h"
#include "util/clock.h"
#include "util/log.h"

/* Past this much unsent output QoS 0 messages wait in the session queue
 * (and its limits apply) instead of the output buffer: a client that does
 * not read must not grow the broker's memory. QoS 1/2 traffic is bounded
 * by the in-flight window and the queue limits. */
#define CONN_OUT_LIMIT (1u << 20)
/* Outbound topic aliases used per connection at most (LRU would be better
 * for clients that publish on many topics; first come, first served here). */
#define ALIAS_OUT_MAX 64

/* ---- rings ---------------------------------------------------------- */


static int ring_push(struct delivery_ring *r, const struct delivery *d)
{
    if (r->count == r->cap) {
        uint32_t cap = r->cap ? r->cap * 2 : 8;
        struct delivery *items = malloc(sizeof(*items) * cap);
        if (!items)
            return -1;
        for (uint32_t i = 0; i < r->count; i++)
            items[i] = *ring_at(r, i);
        free(r->items);
        r->items = items;
        r->cap = cap;
        r->head = 0;
    }
    *ring_at(r, r->count) = *d;
    r->count++;
    return 0;
}

static void ring_pop_front(struct delivery_ring *r, struct delivery *out)
{
    *out = *ring_at(r, 0);
    r->head = (r->head + 1) & (r->cap - 1);
    r->count--;
}

/* Remove item i, keeping order. */
static void ring_remove(struct delivery_ring *r, uint32_t i)
{
    if (i == 0) {
        r->head = (r->head + 1) & (r->cap - 1);
        r->count--;
        return;
    }
    for (uint32_t k = i; k + 1 < r->count; k++)
        *ring_at(r, k) = *ring_at(r, k + 1);
    r->count--;
}

static void feed_free(struct retained_feed *f)
{
    for (size_t i = f->pos; i < f->count; i++)
        message_unref(f->msgs[i]);
    free(f->msgs);
    if (f->disk) {
        persist_retained_scan_free(f->disk);
        free(f->disk);
    }
    free(f->barrier);
    free(f);
}

static void ring_clear(struct delivery_ring *r)
{
    for (uint32_t i = 0; i < r->count; i++) {
        struct delivery *d = ring_at(r, i);
        if (d->flags & DELIVERY_FEED)
            feed_free(d->feed);
        else
            message_unref(d->msg);
    }
    free(r->items);
    memset(r, 0, sizeof(*r));
}

/* Keep the atomic mirror of the queue depth in step (read by other
 * workers for publisher pacing); what waits on disk counts too. */
void session_queue_mirror(struct session *s)
{
    uint64_t n = s->queue.count + s->cold_count;
    atomic_store_explicit(&s->queued_count, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n,
                          memory_order_relaxed);
}

/* ---- queues larger than memory ---------------------------------------
 * Stored deliveries queued in memory are counted per worker against its
 * share of store_queue_memory. Past it, a session's new deliveries stay on
 * disk only (persist_delivery_spill), offline sessions at once and online
 * ones past a short head; once a session has any on disk, every new one
 * goes there too, so the queue in memory is always older than what is on
 * disk. They come back (persist_refill) when the session is sending and
 * its queue in memory runs low. */
#define SPILL_HEAD 64      /* an online session keeps this many in memory */
#define REFILL_LOW 256     /* refill below this many in memory */
#define REFILL_MAX 4096    /* deliveries read back at a time */

uint64_t session_delivery_mem(const struct delivery *d)
{
    const struct message *m = d->msg;
    return sizeof(*m) + m->topic_len + 1 + m->payload_len + m->props_len + sizeof(*d);
}

static void mem_add(struct worker *w, struct session *s, const struct delivery *d)
{
    if (d->seq) {
        uint64_t n = session_delivery_mem(d);
        s->queue_mem += n;
        w->queue_mem += n;
    }
}

static void mem_sub(struct worker *w, struct session *s, const struct delivery *d)
{
    if (d->seq) {
        uint64_t n = session_delivery_mem(d);
        s->queue_mem -= n;
        w->queue_mem -= n;
    }
}

/* ---- table ---------------------------------------------------------- */

void session_table_init(struct session_table *t)
{
    t->buckets = NULL;
    t->mask = 0;
    t->count = 0;
}

void session_table_free(struct session_table *t)
{
    free(t->buckets);
    t->buckets = NULL;
    t->mask = 0;
    t->count = 0;
}

struct session *session_table_find(struct session_table *t, const uint8_t *id,
                                   size_t len, uint32_t hash)
{
    if (!t->buckets)
        return NULL;
    for (struct session *s = t->buckets[hash & t->mask]; s; s = s->hnext)
        if (s->client_hash == hash && s->client_id_len == len &&
            memcmp(s->client_id, id, len) == 0)
            return s;
    return NULL;
}

static int table_grow(struct session_table *t)
{
    size_t n = t->buckets ? (t->mask + 1) * 2 : 64;
    struct session **b = calloc(n, sizeof(*b));
    if (!b)
        return -1;
    if (t->buckets) {
        for (size_t i = 0; i <= t->mask; i++) {
            struct session *s = t->buckets[i];
            while (s) {
                struct session *next = s->hnext;
                s->hnext = b[s->client_hash & (n - 1)];
                b[s->client_hash & (n - 1)] = s;
                s = next;
            }
        }
        free(t->buckets);
    }
    t->buckets = b;
    t->mask = n - 1;
    return 0;
}

static void table_remove(struct session_table *t, struct session *s)
{
    struct session **pp = &t->buckets[s->client_hash & t->mask];
    while (*pp && *pp != s)
        pp = &(*pp)->hnext;
    if (*pp) {
        *pp = s->hnext;
        t->count--;
    }
}

struct session *session_new(struct worker *w, const uint8_t *client_id, size_t len,
                            uint32_t hash)
{
    struct session_table *t = &w->sessions;
    if ((!t->buckets || t->count >= t->mask + 1) && table_grow(t) < 0)
        return NULL;
    struct session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->client_id = malloc(len + 1);
    if (!s->client_id) {
        free(s);
        return NULL;
    }
    memcpy(s->client_id, client_id, len);
    s->client_id[len] = '\0';
    s->client_id_len = (uint16_t)len;
    s->client_hash = hash;
    atomic_init(&s->refs, 1);
    atomic_init(&s->online, false);
    atomic_init(&s->inflight_count, 0);
    atomic_init(&s->queued_count, 0);
    atomic_init(&s->incoming, 0);
    atomic_init(&s->out_full, false);
    atomic_init(&s->stalled, false);
    atomic_init(&s->persistent, false);
    s->id = atomic_fetch_add(&w->broker->next_session_id, 1) + 1;
    s->worker = w;
    s->hnext = t->buckets[hash & t->mask];
    t->buckets[hash & t->mask] = s;
    t->count++;
    STAT_ADD(&w->stats, sessions, 1);
    return s;
}

void session_unref(struct session *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    ring_clear(&s->inflight);
    ring_clear(&s->queue);
    for (uint32_t i = 0; i < s->sub_count; i++)
        free(s->subs[i].filter);
    free(s->subs);
    free(s->qos2_in);
    if (s->will)
        message_unref(s->will);
    free(s->client_id);
    free(s);
}

/* ---- router callbacks ------------------------------------------------ */

void session_router_ref(void *sub) { session_ref(sub); }

bool session_router_online(void *sub)
{
    return atomic_load_explicit(&((struct session *)sub)->online, memory_order_relaxed);
}

uint32_t session_router_inflight(void *sub)
{
    return atomic_load_explicit(&((struct session *)sub)->inflight_count,
                                memory_order_relaxed);
}

bool session_router_busy(void *sub)
{
    struct session *s = sub;
    return session_backed_up(s, session_backlog_threshold(s->worker));
}

uint64_t session_router_id(void *sub) { return ((struct session *)sub)->id; }

/* ---- sending --------------------------------------------------------- */

static uint32_t window_of(const struct session *s)
{
    const struct conn *c = s->conn;
    uint32_t win = s->worker->broker->conf->max_inflight_messages;
    if (win == 0)
        win = 65535;
    if (c && c->peer_receive_max && c->peer_receive_max < win)
        win = c->peer_receive_max;
    /* One id must stay free so that allocation always terminates. */
    return win > 65534 ? 65534 : win;
}

/* Is the in-flight window full (count, or bytes with max_inflight_bytes)?
 * The byte sum is recomputed rather than tracked: it costs O(window) and
 * only when max_inflight_bytes is set, and cannot drift out of step. */
static bool window_full(struct session *s)
{
    if (s->inflight.count >= window_of(s))
        return true;
    uint64_t max_bytes = s->worker->broker->conf->max_inflight_bytes;
    if (!max_bytes)
        return false;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < s->inflight.count; i++)
        sum += ring_at(&s->inflight, i)->msg->payload_len;
    return sum >= max_bytes;
}

static bool inflight_has(struct session *s, uint16_t pid)
{
    for (uint32_t i = 0; i < s->inflight.count; i++)
        if (ring_at(&s->inflight, i)->packet_id == pid)
            return true;
    return false;
}

static uint16_t next_packet_id(struct session *s)
{
    for (;;) {
        uint16_t pid = ++s->next_packet_id;
        if (pid != 0 && !inflight_has(s, pid))
            return pid;
    }
}

/* Outbound topic aliases: an alias already assigned to this topic, or 0. */
static uint16_t alias_lookup(const struct conn *c, const char *topic, uint16_t len)
{
    for (uint16_t i = 0; i < c->alias_out_count; i++)
        if (c->alias_out[i].len == len && memcmp(c->alias_out[i].topic, topic, len) == 0)
            return (uint16_t)(i + 1);
    return 0;
}

static uint16_t alias_limit(const struct conn *c)
{
    return c->peer_alias_max < ALIAS_OUT_MAX ? c->peer_alias_max : ALIAS_OUT_MAX;
}

/* Assign the next alias to topic; 0 when none can be had. */
static uint16_t alias_assign(struct conn *c, const char *topic, uint16_t len)
{
    if (!c->alias_out) {
        c->alias_out = calloc(alias_limit(c), sizeof(*c->alias_out));
        if (!c->alias_out)
            return 0;
    }
    char *copy = malloc(len);
    if (!copy)
        return 0;
    memcpy(copy, topic, len);
    c->alias_out[c->alias_out_count].topic = copy;
    c->alias_out[c->alias_out_count].len = len;
    return ++c->alias_out_count;
}

static size_t publish_size(size_t topic_len, uint8_t qos, bool v5, size_t props_len,
                           size_t payload_len, size_t *rl)
{
    *rl = 2 + topic_len + (qos ? 2 : 0) + payload_len +
          (v5 ? mqtt_varint_len((uint32_t)props_len) + props_len : 0);
    return 1 + mqtt_varint_len((uint32_t)*rl) + *rl;
}

/* Encode and queue one PUBLISH. Returns false when the message cannot be
 * sent to this client (larger than its Maximum Packet Size, expired, or
 * not readable under its ACL): the caller then drops it. */
static bool send_publish(struct worker *w, struct conn *c, const struct delivery *d, bool dup)
{
    const struct message *m = d->msg;
    uint32_t expiry_left = 0;
    if (m->expiry_at) {
        uint64_t now = clock_wall_ms();
        if (now >= m->expiry_at)
            return false;
        expiry_left = (uint32_t)((m->expiry_at - now + 999) / 1000);
    }
    /* A client behind a mount point sees topics without it. */
    const char *topic = m->topic;
    uint16_t topic_len = m->topic_len;
    if (c->mount_len && topic_len > c->mount_len && memcmp(topic, c->mount, c->mount_len) == 0) {
        topic += c->mount_len;
        topic_len = (uint16_t)(topic_len - c->mount_len);
    }
    /* Checked as it goes out, so that queued and retained messages are
     * held to the rules of the connection that takes them. */
    if (c->acl && !acl_allows(c->acl, (const uint8_t *)topic, topic_len, ACL_READ)) {
        log_debug("client %s: %.*s not sent: the ACL does not let it read that topic",
                  c->client_id ? c->client_id : c->peer, (int)topic_len, topic);
        return false;
    }
    bool v5 = c->version == MQTT_V5;
    size_t props_len = 0;
    if (v5) {
        props_len = m->props_len;
        if (m->expiry_at)
            props_len += 5;
        for (uint8_t i = 0; i < d->sub_id_count; i++)
            props_len += 1 + mqtt_varint_len(d->sub_ids[i]);
    }
    /* Topic alias: reuse one, or assign one if the packet then fits. */
    uint16_t alias = 0;
    bool send_topic = true;
    size_t rl, total;
    if (v5 && c->peer_alias_max) {
        alias = alias_lookup(c, topic, topic_len);
        if (alias) {
            send_topic = false;
        } else if (c->alias_out_count < alias_limit(c)) {
            total = publish_size(topic_len, d->qos, v5, props_len + 3, m->payload_len, &rl);
            if (!c->peer_max_packet || total <= c->peer_max_packet)
                alias = alias_assign(c, topic, topic_len);
        }
    }
    if (alias)
        props_len += 3;
    uint16_t tl = send_topic ? topic_len : 0;
    total = publish_size(tl, d->qos, v5, props_len, m->payload_len, &rl);
    if (c->peer_max_packet && total > c->peer_max_packet)
        return false;
    uint8_t *p = conn_reserve(c, total);
    if (!p)
        return false;
    *p++ = (uint8_t)(0x30 | (dup ? 0x08 : 0) | (d->qos << 1) |
                     ((d->flags & DELIVERY_RETAIN) ? 1 : 0));
    p += mqtt_varint_encode((uint32_t)rl, p, 4);
    *p++ = (uint8_t)(tl >> 8);
    *p++ = (uint8_t)tl;
    memcpy(p, topic, tl);
    p += tl;
    if (d->qos) {
        *p++ = (uint8_t)(d->packet_id >> 8);
        *p++ = (uint8_t)d->packet_id;
    }
    if (v5) {
        p += mqtt_varint_encode((uint32_t)props_len, p, 4);
        if (m->expiry_at) {
            *p++ = MQTT_PROP_MESSAGE_EXPIRY;
            *p++ = (uint8_t)(expiry_left >> 24);
            *p++ = (uint8_t)(expiry_left >> 16);
            *p++ = (uint8_t)(expiry_left >> 8);
            *p++ = (uint8_t)expiry_left;
        }
        if (alias) {
            *p++ = MQTT_PROP_TOPIC_ALIAS;
            *p++ = (uint8_t)(alias >> 8);
            *p++ = (uint8_t)alias;
        }
        for (uint8_t i = 0; i < d->sub_id_count; i++) {
            *p++ = MQTT_PROP_SUBSCRIPTION_ID;
            p += mqtt_varint_encode(d->sub_ids[i], p, 4);
        }
        memcpy(p, m->props, m->props_len);
        p += m->props_len;
    }
    memcpy(p, m->payload, m->payload_len);
    conn_commit(c, total);
    STAT_ADD(&w->stats, msgs_sent, 1);
    return true;
}

static void send_pubrel(struct conn *c, uint16_t pid)
{
    uint8_t pkt[4] = {0x62, 2, (uint8_t)(pid >> 8), (uint8_t)pid};
    conn_write(c, pkt, sizeof(pkt));
}

/* A delivery leaves the session without being completed. */
static void drop(struct worker *w, struct session *s, struct delivery *d)
{
    STAT_ADD(&w->stats, msgs_dropped, 1);
    persist_delivery_done(w, s, d);
    message_unref(d->msg);
}

/* Send d now (QoS 0) or put it in flight. d's reference moves. */
static void send_now(struct worker *w, struct session *s, struct delivery *d)
{
    struct conn *c = s->conn;
    if (d->qos == 0) {
        if (!send_publish(w, c, d, false))
            STAT_ADD(&w->stats, msgs_dropped, 1);
        message_unref(d->msg);
        return;
    }
    d->packet_id = next_packet_id(s);
    if (!send_publish(w, c, d, false)) {
        drop(w, s, d);
        return;
    }
    d->flags |= DELIVERY_SENT;
    if (ring_push(&s->inflight, d) < 0) {
        drop(w, s, d);
        return;
    }
    persist_delivery_update(w, s, d); /* its packet id, before it leaves */
    atomic_store_explicit(&s->inflight_count, s->inflight.count, memory_order_relaxed);
}

void session_output_written(struct worker *w, struct session *s, size_t unsent)
{
    s->progress++;
    if (unsent <= SESSION_OUT_PACE / 2 && atomic_load_explicit(&s->out_full, memory_order_relaxed))
        atomic_store_explicit(&s->out_full, false, memory_order_relaxed);
    if (s->queue.count && unsent <= CONN_OUT_LIMIT / 2)
        session_pump_soon(w, s);
}

static void session_pump_later(struct worker *w, struct session *s);

void session_pump_soon(struct worker *w, struct session *s)
{
    /* Output written while the worker flushes would leave before what it
     * stored (packet ids, messages read back from disk) is committed: the
     * pump waits for the next loop iteration. */
    if (!w->flushing) {
        session_pump(w, s);
        return;
    }
    session_pump_later(w, s);
}

/* A pump at the next loop iteration, even when the worker is not
 * flushing (a feed reading the store a stretch at a time). */
static void session_pump_later(struct worker *w, struct session *s)
{
    if (s->pump_queued)
        return;
    s->pump_queued = true;
    session_ref(s);
    s->pump_next = w->pumps;
    w->pumps = s;
}

void session_run_pumps(struct worker *w)
{
    /* Pumps queued meanwhile run at the next iteration. */
    struct session *list = w->pumps;
    w->pumps = NULL;
    while (list) {
        struct session *s = list;
        list = s->pump_next;
        s->pump_queued = false;
        if (!s->dead)
            session_pump(w, s);
        session_unref(s);
    }
}

void session_cold_lost(struct session *s)
{
    s->cold_count = 0;
    s->queued_bytes = 0;
    for (uint32_t i = 0; i < s->queue.count; i++) {
        const struct delivery *d = ring_at(&s->queue, i);
        if (!(d->flags & DELIVERY_FEED))
            s->queued_bytes += d->msg->payload_len;
    }
    session_queue_mirror(s);
}

static bool online(const struct session *s)
{
    return s->conn && s->conn->state == CONN_ACTIVE;
}

static bool should_spill(struct worker *w, struct session *s)
{
    if (s->cold_count)
        return true;
    uint64_t budget = w->broker->conf->store_queue_memory;
    if (!budget)
        return false;
    budget /= (uint64_t)w->broker->worker_count;
    return w->queue_mem >= budget && (!online(s) || s->queue.count >= SPILL_HEAD);
}

void session_deliver(struct worker *w, struct session *s, struct delivery *d)
{
    const struct config *cf = w->broker->conf;
    if (s->dead) {
        persist_delivery_done(w, s, d);
        message_unref(d->msg);
        return;
    }
    if (online(s)) {
        /* QoS 0 waits in the queue only behind other messages or a full
         * output buffer; the queue limits below then apply to it too. */
        if (d->qos == 0 && s->queue.count == 0 && s->cold_count == 0 &&
            buf_used(&s->conn->out) <= CONN_OUT_LIMIT) {
            send_now(w, s, d);
            if (buf_used(&s->conn->out) > SESSION_OUT_PACE &&
                !atomic_load_explicit(&s->out_full, memory_order_relaxed))
                atomic_store_explicit(&s->out_full, true, memory_order_relaxed);
            return;
        }
        if (d->qos && s->queue.count == 0 && s->cold_count == 0 && !window_full(s)) {
            send_now(w, s, d);
            return;
        }
    } else if (d->qos == 0 && !cf->queue_qos0_messages) {
        message_unref(d->msg); /* QoS 0 is not kept for offline clients */
        return;
    }
    if ((cf->max_queued_messages && s->queue.count + s->cold_count >= cf->max_queued_messages) ||
        (cf->max_queued_bytes && s->queued_bytes + d->msg->payload_len > cf->max_queued_bytes)) {
        drop(w, s, d);
        return;
    }
    s->queued_bytes += d->msg->payload_len;
    if (d->seq && should_spill(w, s)) {
        if (!s->cold_count || d->seq < s->cold_next)
            s->cold_next = d->seq;
        persist_delivery_spill(w, s, d);
        message_unref(d->msg);
        s->cold_count++;
        session_queue_mirror(s);
        return;
    }
    if (ring_push(&s->queue, d) < 0) {
        s->queued_bytes -= d->msg->payload_len;
        drop(w, s, d);
        return;
    }
    mem_add(w, s, d);
    session_queue_mirror(s);
}

int session_refill_push(struct worker *w, struct session *s, struct delivery *d)
{
    if (ring_push(&s->queue, d) < 0)
        return -1;
    s->cold_count--;
    mem_add(w, s, d);
    session_queue_mirror(s);
    return 0;
}

/* A delivery of one of the feed's messages, as the subscription asks. */
static struct delivery feed_delivery(const struct retained_feed *f, struct message *m)
{
    struct delivery d = {.msg = m, .qos = m->qos < f->qos ? m->qos : f->qos,
                         .flags = DELIVERY_RETAIN};
    if (f->sub_id) {
        d.sub_ids[0] = f->sub_id;
        d.sub_id_count = 1;
    }
    return d;
}

#define FEED_CHUNK 64        /* stored retained messages read at a time */
#define FEED_SCAN_KEYS 1024  /* records looked at per read, matching or not */

/* The next chunk of the feed's stored retained messages. 1: there is one;
 * 0: there is no more; -1: not now (retained messages set before the
 * SUBSCRIBE are not committed yet, or a stretch without matches), a pump
 * is due at the next iteration. */
static int feed_refill(struct worker *w, struct session *s, struct retained_feed *f)
{
    if (!f->disk || f->disk->done)
        return 0;
    if (f->barrier) {
        if (!persist_retained_barrier_passed(w, f->barrier)) {
            session_pump_later(w, s);
            return -1;
        }
        free(f->barrier);
        f->barrier = NULL;
    }
    f->pos = f->count = 0;
    int n = persist_retained_scan(w, f->disk, FEED_SCAN_KEYS, FEED_CHUNK, session_feed_add, f);
    if (n > 0)
        return 1;
    if (n == 0 && !f->disk->done) {
        session_pump_later(w, s);
        return -1;
    }
    return 0;
}

/* Hand out the next retained message of the feed at the head of the
 * queue, or drop the feed once it is done. False when the connection
 * cannot take the next one yet. */
static bool feed_next(struct worker *w, struct session *s, struct retained_feed *f,
                      uint64_t *now)
{
    int more = f->pos < f->count ? 1 : feed_refill(w, s, f);
    if (more < 0)
        return false;
    if (!more) {
        struct delivery done;
        ring_pop_front(&s->queue, &done);
        session_queue_mirror(s);
        feed_free(f);
        return true;
    }
    struct message *m = f->msgs[f->pos];
    uint8_t qos = m->qos < f->qos ? m->qos : f->qos;
    if (qos ? window_full(s) : buf_used(&s->conn->out) > CONN_OUT_LIMIT)
        return false;
    f->pos++;
    if (m->expiry_at) {
        if (!*now)
            *now = clock_wall_ms();
        if (message_expired(m, *now)) {
            message_unref(m);
            return true;
        }
    }
    struct delivery d = feed_delivery(f, m);
    f->taken++;
    persist_delivery_new_at(w, s, &d,
                            f->seq_base && f->taken <= FEED_SEQ_SPAN ? f->seq_base + f->taken - 1
                                                                      : 0);
    send_now(w, s, &d);
    return true;
}

struct retained_feed *session_feed_new(uint8_t qos, uint32_t sub_id)
{
    struct retained_feed *f = calloc(1, sizeof(*f));
    if (f) {
        f->qos = qos;
        f->sub_id = sub_id;
    }
    return f;
}

void session_feed_add(void *feed, struct message *m)
{
    struct retained_feed *f = feed;
    if (f->count == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        struct message **a = realloc(f->msgs, cap * sizeof(*a));
        if (!a) {
            log_warning("out of memory collecting retained messages; one is not sent");
            message_unref(m);
            return;
        }
        f->msgs = a;
        f->cap = cap;
    }
    f->msgs[f->count++] = m;
}

void session_feed_start(struct worker *w, struct session *s, struct retained_feed *f)
{
    if (f->count == 0 && !f->disk) {
        feed_free(f);
        return;
    }
    /* Behind messages kept on disk only, the feed could not keep its
     * place (what is in memory must be older than what is on disk): then
     * they are delivered now, and go to disk like the rest. */
    struct delivery marker = {.flags = DELIVERY_FEED, .feed = f};
    if (s->cold_count || ring_push(&s->queue, &marker) < 0) {
        for (;;) {
            for (; f->pos < f->count; f->pos++) {
                struct delivery d = feed_delivery(f, f->msgs[f->pos]);
                persist_delivery_new(w, s, &d);
                session_deliver(w, s, &d);
            }
            if (!f->disk || f->disk->done)
                break;
            f->pos = f->count = 0;
            if (persist_retained_scan(w, f->disk, FEED_SCAN_KEYS, FEED_CHUNK, session_feed_add,
                                      f) < 0)
                break;
        }
        feed_free(f);
        return;
    }
    /* Stored, they sort before what arrives after this SUBSCRIBE, as in
     * the queue: their sequence numbers are taken now. */
    f->seq_base = persist_reserve_seqs(w, s, f->disk ? FEED_SEQ_SPAN : f->count);
    if (f->disk)
        f->barrier = persist_retained_barrier(w);
    session_queue_mirror(s);
    session_pump(w, s);
}

int session_feed_disk(struct worker *w, struct retained_feed *f, const uint8_t *filter,
                      size_t len)
{
    if (!persist_retained_on_disk(w))
        return 0;
    f->disk = calloc(1, sizeof(*f->disk));
    if (!f->disk || !(f->disk->filter = malloc(len ? len : 1))) {
        free(f->disk);
        f->disk = NULL;
        return -1;
    }
    memcpy(f->disk->filter, filter, len);
    f->disk->filter_len = len;
    return 0;
}

void session_pump(struct worker *w, struct session *s)
{
    if (!online(s))
        return;
    uint64_t now = 0;
    for (;;) {
        while (s->queue.count) {
            struct delivery *head = ring_at(&s->queue, 0);
            if (head->flags & DELIVERY_FEED) {
                if (!feed_next(w, s, head->feed, &now))
                    break;
                continue;
            }
            if (head->qos && window_full(s))
                break;
            if (buf_used(&s->conn->out) > CONN_OUT_LIMIT && head->qos == 0)
                break;
            struct delivery d;
            ring_pop_front(&s->queue, &d);
            session_queue_mirror(s);
            s->queued_bytes -= d.msg->payload_len;
            mem_sub(w, s, &d);
            if (d.msg->expiry_at) {
                if (!now)
                    now = clock_wall_ms();
                if (message_expired(d.msg, now)) {
                    drop(w, s, &d);
                    continue;
                }
            }
            send_now(w, s, &d);
        }
        /* What waits on disk comes back as the queue in memory runs low. */
        if (!s->cold_count || s->queue.count >= REFILL_LOW || !online(s) || window_full(s))
            return;
        if (persist_refill(w, s, REFILL_MAX) <= 0)
            return;
    }
}

void session_resume(struct worker *w, struct session *s)
{
    struct conn *c = s->conn;
    for (uint32_t i = 0; i < s->inflight.count;) {
        struct delivery *d = ring_at(&s->inflight, i);
        if (d->flags & DELIVERY_PUBREL) {
            send_pubrel(c, d->packet_id);
        } else if (!send_publish(w, c, d, (d->flags & DELIVERY_SENT) != 0)) {
            /* Too large for the new connection, or expired: gone. */
            persist_delivery_done(w, s, d);
            message_unref(d->msg);
            ring_remove(&s->inflight, i);
            continue;
        }
        d->flags |= DELIVERY_SENT;
        i++;
    }
    atomic_store_explicit(&s->inflight_count, s->inflight.count, memory_order_relaxed);
    session_pump(w, s);
}

static int inflight_find(struct session *s, uint16_t pid)
{
    for (uint32_t i = 0; i < s->inflight.count; i++)
        if (ring_at(&s->inflight, i)->packet_id == pid)
            return (int)i;
    return -1;
}

static void inflight_done(struct worker *w, struct session *s, uint32_t i)
{
    s->progress++;
    struct delivery *d = ring_at(&s->inflight, i);
    persist_delivery_done(w, s, d);
    message_unref(d->msg);
    ring_remove(&s->inflight, i);
    atomic_store_explicit(&s->inflight_count, s->inflight.count, memory_order_relaxed);
    session_pump(w, s);
}

int session_restore_delivery(struct session *s, struct delivery *d)
{
    bool inflight = (d->flags & DELIVERY_SENT) && d->packet_id;
    if (ring_push(inflight ? &s->inflight : &s->queue, d) < 0)
        return -1;
    if (inflight) {
        atomic_store_explicit(&s->inflight_count, s->inflight.count, memory_order_relaxed);
        if (d->packet_id >= s->next_packet_id)
            s->next_packet_id = d->packet_id;
    } else {
        s->queued_bytes += d->msg->payload_len;
        mem_add(s->worker, s, d);
        session_queue_mirror(s);
    }
    return 0;
}

bool session_puback(struct worker *w, struct session *s, uint16_t pid)
{
    int i = inflight_find(s, pid);
    if (i < 0 || ring_at(&s->inflight, (uint32_t)i)->qos != 1)
        return false;
    inflight_done(w, s, (uint32_t)i);
    return true;
}

bool session_pubrec(struct worker *w, struct session *s, uint16_t pid, uint8_t reason)
{
    int i = inflight_find(s, pid);
    if (i < 0)
        return false;
    struct delivery *d = ring_at(&s->inflight, (uint32_t)i);
    if (d->qos != 2)
        return false;
    if (reason >= 0x80) {
        /* The receiver refused it: the exchange ends here (MQTT 5 4.3.3). */
        inflight_done(w, s, (uint32_t)i);
        return true;
    }
    d->flags |= DELIVERY_PUBREL;
    persist_delivery_update(w, s, d);
    send_pubrel(s->conn, pid);
    return true;
}

bool session_pubcomp(struct worker *w, struct session *s, uint16_t pid)
{
    int i = inflight_find(s, pid);
    if (i < 0 || !(ring_at(&s->inflight, (uint32_t)i)->flags & DELIVERY_PUBREL))
        return false;
    inflight_done(w, s, (uint32_t)i);
    return true;
}

/* ---- inbound QoS 2 ---------------------------------------------------- */

bool session_qos2_has(const struct session *s, uint16_t pid)
{
    for (uint32_t i = 0; i < s->qos2_in_count; i++)
        if (s->qos2_in[i] == pid)
            return true;
    return false;
}

int session_qos2_add(struct session *s, uint16_t pid)
{
    if (s->qos2_in_count == s->qos2_in_cap) {
        uint32_t cap = s->qos2_in_cap ? s->qos2_in_cap * 2 : 8;
        uint16_t *a = realloc(s->qos2_in, cap * sizeof(*a));
        if (!a)
            return -1;
        s->qos2_in = a;
        s->qos2_in_cap = cap;
    }
    s->qos2_in[s->qos2_in_count++] = pid;
    return 0;
}

bool session_qos2_remove(struct session *s, uint16_t pid)
{
    for (uint32_t i = 0; i < s->qos2_in_count; i++) {
        if (s->qos2_in[i] == pid) {
            s->qos2_in[i] = s->qos2_in[--s->qos2_in_count];
            return true;
        }
    }
    return false;
}

/* ---- subscriptions ---------------------------------------------------- */

int session_sub_add(struct session *s, const uint8_t *filter, size_t len)
{
    for (uint32_t i = 0; i < s->sub_count; i++)
        if (s->subs[i].len == len && memcmp(s->subs[i].filter, filter, len) == 0)
            return 0;
    if (s->sub_count == s->sub_cap) {
        uint32_t cap = s->sub_cap ? s->sub_cap * 2 : 4;
        struct session_sub *a = realloc(s->subs, cap * sizeof(*a));
        if (!a)
            return -1;
        s->subs = a;
        s->sub_cap = cap;
    }
    char *f = malloc(len + 1);
    if (!f)
        return -1;
    memcpy(f, filter, len);
    f[len] = '\0';
    s->subs[s->sub_count].filter = f;
    s->subs[s->sub_count].len = (uint16_t)len;
    s->sub_count++;
    return 0;
}

void session_sub_remove(struct session *s, const uint8_t *filter, size_t len)
{
    for (uint32_t i = 0; i < s->sub_count; i++) {
        if (s->subs[i].len == len && memcmp(s->subs[i].filter, filter, len) == 0) {
            free(s->subs[i].filter);
            s->subs[i] = s->subs[--s->sub_count];
            return;
        }
    }
}

/* ---- lifecycle -------------------------------------------------------- */

static void publish_will(struct worker *w, struct session *s)
{
    struct message *m = s->will;
    if (!m)
        return;
    s->will = NULL;
    s->will_at = 0;
    /* The will's expiry counts from when it is published (MQTT 5 3.1.3.2.4);
     * nothing else holds the message yet, so it may still be changed. */
    if (s->will_expiry)
        m->expiry_at = clock_wall_ms() + (uint64_t)s->will_expiry * 1000u;
    log_debug("publishing will of %s on %s", s->client_id, m->topic);
    if (m->retain && w->broker->conf->retain_available) {
        persist_retain(w, m);
    }
    worker_route(w, m);
    message_unref(m);
    if (!s->dead)
        persist_session(w, s); /* without the will now */
}

/* Move one delivery chosen from a shared group to another member. */
static bool redirect_shared(struct worker *w, struct session *s, struct delivery *d)
{
    void *other = router_group_pick(w->broker->router, d->group, s,
                                    d->msg->origin_hash, &w->rng);
    if (!other)
        return false;
    struct delivery nd = *d;
    nd.packet_id = 0;
    nd.seq = 0;
    nd.flags &= DELIVERY_RETAIN;
    /* Stored for the new member before it is forgotten for this one, so
     * that the message record never loses its last reference between. */
    persist_delivery_new(w, other, &nd);
    persist_delivery_done(w, s, d);
    worker_deliver(w, other, &nd);
    return true;
}

void session_requeue_shared(struct worker *w, struct session *s)
{
    struct delivery_ring *rings[2] = {&s->inflight, &s->queue};
    for (int r = 0; r < 2; r++) {
        for (uint32_t i = 0; i < rings[r]->count;) {
            struct delivery *d = ring_at(rings[r], i);
            if (d->flags & DELIVERY_FEED) {
                i++;
                continue;
            }
            /* A QoS 2 message past PUBREC was received: it stays.
             * Sizes first: the message may be gone once redirected. */
            uint32_t bytes = d->msg->payload_len;
            uint64_t mem = d->seq ? session_delivery_mem(d) : 0;
            if (d->group && !(d->flags & DELIVERY_PUBREL) && redirect_shared(w, s, d)) {
                if (r == 1) {
                    s->queued_bytes -= bytes;
                    s->queue_mem -= mem;
                    w->queue_mem -= mem;
                }
                ring_remove(rings[r], i); /* the reference moved */
                session_queue_mirror(s);
                continue;
            }
            i++;
        }
    }
    atomic_store_explicit(&s->inflight_count, s->inflight.count, memory_order_relaxed);
}

void session_disconnected(struct worker *w, struct session *s, bool will)
{
    s->conn = NULL;
    atomic_store_explicit(&s->online, false, memory_order_relaxed);
    atomic_store_explicit(&s->out_full, false, memory_order_relaxed);
    session_requeue_shared(w, s);
    if (s->will) {
        if (!will) {
            message_unref(s->will);
            s->will = NULL;
        } else if (s->will_delay == 0) {
            publish_will(w, s);
        } else {
            s->will_at = w->now + (uint64_t)s->will_delay * 1000u;
        }
    }
    if (s->expiry == 0) {
        session_end(w, s);
        return;
    }
    if (s->expiry != SESSION_EXPIRY_NEVER)
        s->expire_at = w->now + (uint64_t)s->expiry * 1000u;
    persist_session(w, s);
}

void session_end(struct worker *w, struct session *s)
{
    if (s->dead)
        return;
    session_requeue_shared(w, s);
    s->dead = true;
    for (uint32_t i = 0; i < s->sub_count; i++)
        router_unsubscribe(w->broker->router, (const uint8_t *)s->subs[i].filter,
                           s->subs[i].len, s);
    if (s->will_at)
        publish_will(w, s); /* the session ended before the will delay ran out */
    persist_session_delete(w, s);
    ring_clear(&s->inflight);
    ring_clear(&s->queue);
    s->queued_bytes = 0;
    w->queue_mem -= s->queue_mem;
    s->queue_mem = 0;
    s->cold_count = 0;
    session_queue_mirror(s);
    atomic_store_explicit(&s->inflight_count, 0, memory_order_relaxed);
    table_remove(&w->sessions, s);
    STAT_ADD(&w->stats, sessions, (uint64_t)-1);
    session_unref(s);
}

uint32_t session_backlog_threshold(const struct worker *w)
{
    uint32_t max = w->broker->conf->max_queued_messages;
    uint32_t t = max ? max / 2 : 1000;
    if (t > 1000)
        t = 1000;
    return t ? t : 1;
}

/* A backlog that has not moved for this long marks the session stalled:
 * it stops pacing publishers, and its queue limit applies instead. */
#define STALL_MS 1000

static void check_stall(struct worker *w, struct session *s, uint64_t now)
{
    uint32_t threshold = session_backlog_threshold(w);
    bool stalled = atomic_load_explicit(&s->stalled, memory_order_relaxed);
    bool out_full = atomic_load_explicit(&s->out_full, memory_order_relaxed);
    uint64_t backlog = s->queue.count + s->cold_count; /* what pacing sees */
    if ((backlog <= threshold / 2 && !out_full) || !s->conn) {
        s->stall_since = 0;
        if (stalled)
            atomic_store_explicit(&s->stalled, false, memory_order_relaxed);
        return;
    }
    if (backlog <= threshold && !out_full)
        return;
    if (s->progress != s->progress_seen) {
        s->progress_seen = s->progress;
        s->stall_since = now;
        return;
    }
    if (!s->stall_since)
        s->stall_since = now;
    else if (!stalled && now - s->stall_since >= STALL_MS) {
        log_info("client %s: backlog of %llu messages and %zu bytes not moving, "
                 "no longer pacing publishers", s->client_id, (unsigned long long)backlog,
                 buf_used(&s->conn->out));
        atomic_store_explicit(&s->stalled, true, memory_order_relaxed);
    }
}

void session_tick(struct worker *w, uint64_t now)
{
    struct session_table *t = &w->sessions;
    if (!t->buckets)
        return;
    for (size_t b = 0; b <= t->mask; b++) {
        struct session *s = t->buckets[b];
        while (s) {
            struct session *next = s->hnext; /* session_end unlinks s */
            if (s->queue.count || s->cold_count ||
                atomic_load_explicit(&s->stalled, memory_order_relaxed) ||
                atomic_load_explicit(&s->out_full, memory_order_relaxed))
                check_stall(w, s, now);
            if (!s->conn) {
                if (s->will_at && now >= s->will_at)
                    publish_will(w, s);
                if (s->expire_at && now >= s->expire_at) {
                    log_debug("session %s expired", s->client_id);
                    session_end(w, s);
                }
            }
            s = next;
        }
    }
}

void session_table_destroy(struct worker *w)
{
    struct session_table *t = &w->sessions;
    if (!t->buckets)
        return;
    for (size_t b = 0; b <= t->mask; b++) {
        struct session *s = t->buckets[b];
        while (s) {
            struct session *next = s->hnext;
            s->dead = true;
            for (uint32_t i = 0; i < s->sub_count; i++)
                router_unsubscribe(w->broker->router, (const uint8_t *)s->subs[i].filter,
                                   s->subs[i].len, s);
            session_unref(s);
            s = next;
        }
    }
    session_table_free(t);
}
