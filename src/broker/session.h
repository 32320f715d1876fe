/* session.h - MQTT sessions: what the broker remembers about a client
 * between and across its connections (MQTT 5 section 4.1).
 *
 * A session lives on one worker for its whole life: the worker chosen by a
 * hash of its client identifier. Connections for that client id are moved
 * to that worker after CONNECT, so takeover, expiry, wills and queues are
 * handled by one thread with no locks. Other workers reach a session only
 * through delivery batches (worker.h) and, for the router's shared-group
 * choice, the atomic `online` and `inflight_count` fields.
 */
#ifndef PETREL_BROKER_SESSION_H
#define PETREL_BROKER_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqtt/codec.h"

struct conn;
struct worker;
struct message;
struct route;

#define SESSION_EXPIRY_NEVER UINT32_MAX
#define DELIVERY_MAX_SUB_IDS 4

enum delivery_flags {
    DELIVERY_RETAIN = 1 << 0,   /* send with the RETAIN flag */
    DELIVERY_SENT = 1 << 1,     /* sent at least once: resend with DUP */
    DELIVERY_PUBREL = 1 << 2,   /* QoS 2: PUBREC received, PUBREL sent */
    DELIVERY_INLINE = 1 << 3,   /* its stored record carries the message */
    DELIVERY_FEED = 1 << 4,     /* not a message: retained messages to hand out */
};

/* The retained messages matching one new subscription, handed out from
 * its place in the queue as the connection takes them (session_pump), so
 * that a subscription matching a million of them neither builds a million
 * deliveries at once nor lets newer messages overtake them. */
struct retained_feed {
    struct message **msgs;      /* references, in match order: the in-memory
                                   matches, then a chunk read from disk */
    size_t count, cap, pos;
    uint8_t qos;                /* granted QoS of the subscription */
    uint32_t sub_id;            /* its subscription identifier; 0 = none */
    uint64_t seq_base;          /* stored: the n-th message handed out gets
                                   seq_base + n (FEED_SEQ_SPAN reserved) */
    uint64_t taken;             /* messages handed out so far */
    /* With a store: the stored retained messages, read a chunk at a time
     * as the connection takes them, once the retained messages set before
     * the SUBSCRIBE are committed (persist_retained_barrier). */
    struct retained_scan *disk;
    uint64_t *barrier;
};

/* Sequence numbers a stored feed reserves: it keeps its place among
 * stored deliveries for that many messages. */
#define FEED_SEQ_SPAN (1ull << 24)

/* One message for one session, queued or in flight. */
struct delivery {
    struct message *msg;        /* holds a reference; NULL for a feed */
    union {
        const void *group;      /* shared group it was chosen from, or NULL */
        struct retained_feed *feed; /* with DELIVERY_FEED */
    };
    uint32_t sub_ids[DELIVERY_MAX_SUB_IDS];
    uint64_t seq;               /* key of its stored record; 0 = not stored */
    uint16_t packet_id;         /* in flight only */
    uint8_t qos;
    uint8_t flags;              /* enum delivery_flags */
    uint8_t sub_id_count;
};

/* A ring of deliveries; grows by doubling. */
struct delivery_ring {
    struct delivery *items;
    uint32_t head, count, cap;
};

/* The i-th delivery of a ring, oldest first. */
static inline struct delivery *ring_at(struct delivery_ring *r, uint32_t i)
{
    return &r->items[(r->head + i) & (r->cap - 1)];
}

struct session_sub {
    char *filter;
    uint16_t len;
};

struct session {
    atomic_uint refs;
    atomic_bool online;
    atomic_uint inflight_count;
    /* Publisher pacing (worker.c): other workers read these to decide
     * whether a PUBLISH for this session should slow its publisher. */
    atomic_uint queued_count;   /* mirror of queue.count */
    atomic_uint incoming;       /* deliveries in transit from other workers */
    atomic_bool out_full;       /* unsent output above SESSION_OUT_PACE */
    atomic_bool stalled;        /* backlog made no progress for a while */
    atomic_bool persistent;     /* kept in the durable store (expiry > 0) */
    bool stored;                /* owner only: records may exist in the store */
    uint64_t progress;          /* acknowledgements and writes, owner only */
    uint64_t progress_seen;     /* value at the last stall check */
    uint64_t stall_since;       /* monotonic ms the backlog stopped moving */
    uint64_t id;                /* unique per process; No Local compares it */
    struct worker *worker;      /* owner */
    struct conn *conn;          /* current connection, NULL when offline */
    struct session *hnext;      /* owner's session table chain */
    char *client_id;
    uint16_t client_id_len;
    uint32_t client_hash;
    uint8_t version;            /* of the latest connection */
    bool dead;                  /* ended: arriving deliveries are dropped */
    uint32_t expiry;            /* seconds; SESSION_EXPIRY_NEVER */
    uint64_t expire_at;         /* monotonic ms; 0 = not counting down */
    struct delivery_ring inflight;
    struct delivery_ring queue;
    uint64_t queued_bytes;      /* payload bytes queued, in memory and on disk */
    uint64_t queue_mem;         /* memory of the stored deliveries in queue */
    uint64_t cold_count;        /* queued deliveries on disk only (C records),
                                   all younger than those in queue */
    uint64_t cold_next;         /* no C record of it has a lower seq */
    struct session *pump_next;  /* owner's list of sessions to pump soon */
    bool pump_queued;
    uint16_t next_packet_id;
    /* Inbound QoS 2: packet ids whose PUBLISH was accepted, awaiting PUBREL. */
    uint16_t *qos2_in;
    uint32_t qos2_in_count, qos2_in_cap;
    struct session_sub *subs;
    uint32_t sub_count, sub_cap;
    /* Will of the current or last connection. */
    struct message *will;       /* reference, or NULL */
    uint32_t will_delay;        /* seconds */
    uint32_t will_expiry;       /* Message Expiry Interval of the will; 0 = none */
    uint64_t will_at;           /* monotonic ms when a delayed will is due; 0 = none */
};

/* Sessions of one worker, by client id. */
struct session_table {
    struct session **buckets;
    size_t mask;   /* bucket count - 1 */
    size_t count;
};

void session_table_init(struct session_table *t);
void session_table_free(struct session_table *t);
struct session *session_table_find(struct session_table *t, const uint8_t *id,
                                   size_t len, uint32_t hash);

/* Create a session in w's table (one reference, held by the table). */
struct session *session_new(struct worker *w, const uint8_t *client_id, size_t len,
                            uint32_t hash);
static inline void session_ref(struct session *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}
void session_unref(struct session *s);

/* End a session: unsubscribe everything, drop its messages, publish a
 * pending will, remove it from the table, drop the table's reference. */
void session_end(struct worker *w, struct session *s);

/* The connection went away. publish_will: abnormal loss (no DISCONNECT,
 * or DISCONNECT 0x04); the will is sent now or scheduled after its delay,
 * or sooner if the session ends first. */
void session_disconnected(struct worker *w, struct session *s, bool publish_will);

/* A message for this session (called on its owner worker). Takes over the
 * delivery's message reference. */
void session_deliver(struct worker *w, struct session *s, struct delivery *d);

/* Send what the in-flight window allows from the queue. */
void session_pump(struct worker *w, struct session *s);
/* The same, or at the next loop iteration when the worker is flushing
 * (session_run_pumps). */
void session_pump_soon(struct worker *w, struct session *s);
void session_run_pumps(struct worker *w);
/* Publish the queue depth (in memory and on disk) to other workers. */
void session_queue_mirror(struct session *s);
/* Its messages on disk could not be read back: forget them. */
void session_cold_lost(struct session *s);

/* Retained messages for a new subscription: collect them into a feed
 * (session_feed_add is a retain_match callback), then hand it to the
 * session, which sends them after what is already queued and before what
 * arrives later. */
struct retained_feed *session_feed_new(uint8_t qos, uint32_t sub_id);
void session_feed_add(void *feed, struct message *m);
/* Read the stored retained messages matching filter too. */
int session_feed_disk(struct worker *w, struct retained_feed *f, const uint8_t *filter,
                      size_t len);
void session_feed_start(struct worker *w, struct session *s, struct retained_feed *f);

/* After (re)connect: resend in-flight messages (with DUP, PUBREL for QoS 2
 * after PUBREC), then pump. */
void session_resume(struct worker *w, struct session *s);

/* Put a delivery read from the store back (startup): in flight if it was
 * sent, queued otherwise. Takes over d's message reference. */
int session_restore_delivery(struct session *s, struct delivery *d);
/* A delivery kept on disk only comes back into memory, at the end of the
 * queue (persist_refill). Takes over d's message reference. */
int session_refill_push(struct worker *w, struct session *s, struct delivery *d);
/* Bytes a queued delivery is counted for against store_queue_memory. */
uint64_t session_delivery_mem(const struct delivery *d);

/* Acknowledgements from the client. Return false if no such packet id is
 * in the right state. */
bool session_puback(struct worker *w, struct session *s, uint16_t pid);
bool session_pubrec(struct worker *w, struct session *s, uint16_t pid, uint8_t reason);
bool session_pubcomp(struct worker *w, struct session *s, uint16_t pid);

/* Inbound QoS 2 state. */
bool session_qos2_has(const struct session *s, uint16_t pid);
int session_qos2_add(struct session *s, uint16_t pid);
bool session_qos2_remove(struct session *s, uint16_t pid);

/* Subscription bookkeeping (the router holds the index itself). */
int session_sub_add(struct session *s, const uint8_t *filter, size_t len);
void session_sub_remove(struct session *s, const uint8_t *filter, size_t len);

/* Timers: will delay and session expiry. Called from the worker tick. */
void session_tick(struct worker *w, uint64_t now);

/* Shared-group members' unacknowledged messages go to another member when
 * the member's connection is lost (called before the session goes offline). */
void session_requeue_shared(struct worker *w, struct session *s);

/* Shutdown: free every session of w without publishing wills. */
void session_table_destroy(struct worker *w);

/* Queue depth past which a session counts as backed up for publisher
 * pacing (half of max_queued_messages, at most 1000). */
uint32_t session_backlog_threshold(const struct worker *w);

/* Unsent output past which a session counts as backed up: QoS 0 goes
 * straight to the connection's output, so this is its queue. */
#define SESSION_OUT_PACE (256u << 10)

/* Messages waiting for this session: queued, plus those on their way from
 * other workers (counted as they are routed, so a burst shows at once). */
static inline uint32_t session_backlog(struct session *s)
{
    return atomic_load_explicit(&s->queued_count, memory_order_relaxed) +
           atomic_load_explicit(&s->incoming, memory_order_relaxed);
}

/* Is this session backed up past `threshold` messages or its output limit? */
static inline bool session_backed_up(struct session *s, uint32_t threshold)
{
    return session_backlog(s) > threshold ||
           atomic_load_explicit(&s->out_full, memory_order_relaxed);
}

/* The owner wrote some of the session's output; `unsent` bytes remain. */
void session_output_written(struct worker *w, struct session *s, size_t unsent);


/* Router callbacks. */
void session_router_ref(void *sub);
bool session_router_online(void *sub);
uint32_t session_router_inflight(void *sub);
bool session_router_busy(void *sub);
uint64_t session_router_id(void *sub);

#endif
