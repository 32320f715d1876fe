/* worker.h - a worker thread: one epoll loop, the connections and sessions
 * it owns, and its inbox for work from other workers.
 *
 * Cross-worker traffic (a PUBLISH on worker A for a session on worker B, or
 * a connection moving to its session's worker) goes through B's inbox: A
 * collects deliveries for B in a batch during its loop iteration and hands
 * the whole batch over at the end with one mutex acquisition and at most one
 * eventfd write. Nothing is locked per message.
 */
#ifndef PETREL_NET_WORKER_H
#define PETREL_NET_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"
#include "broker/session.h"
#include "util/levels.h"

struct conn;
struct route;
struct message;

/* A delivery on its way to a session owned by another worker. */
struct remote_delivery {
    struct session *session; /* holds a reference */
    struct delivery d;       /* holds a message reference */
};

struct delivery_batch {
    struct delivery_batch *next;
    size_t count, cap;
    struct remote_delivery items[];
};

/* Work handed to a worker by another thread. */
struct inbox {
    pthread_mutex_t lock;
    struct delivery_batch *batches;      /* oldest first: per-publisher order */
    struct delivery_batch *batches_last; /* is kept across workers */
    struct conn *conns;          /* connections moving here (linked by next) */
    bool signalled;              /* eventfd written since the last drain */
};

struct delayed_msg {
    uint64_t due;                /* monotonic ms */
    uint64_t seq;                /* order of arrival, for equal due times */
    struct message *msg;
    uint64_t store_due;          /* its D record's key (wall-clock ms, id); */
    uint64_t store_id;           /* store_id 0 = not stored */
};

struct store_batch;

struct worker {
    int ev_kind;                 /* EV_WAKE: the eventfd's epoll tag */
    int id;
    pthread_t thread;
    struct broker *broker;
    int epfd;
    int wakefd;
    struct worker_stats stats;
    struct inbox inbox;
    /* Held while the worker runs its loop, released while it sleeps in
     * epoll_wait: another worker that takes it may deliver to this
     * worker's sessions in its place (worker.c, "direct hand-over"). */
    pthread_mutex_t loop_lock;
    struct delivery_batch **outbox; /* per target worker, NULL when empty */
    struct conn *conns;
    size_t conn_count;
    struct conn *dirty;
    struct conn *paced;          /* publishers waiting for a backlog to drain */
    struct session_table sessions;
    uint8_t *rbuf;               /* shared read buffer */
    size_t rbuf_cap;
    struct route *routes;        /* router_match scratch */
    size_t routes_cap;
    uint64_t rng;
    uint64_t now;                /* monotonic ms, refreshed each iteration */
    uint64_t next_tick;
    uint64_t next_sys;
    struct delayed_msg *delayed; /* min-heap by due */
    size_t delayed_count, delayed_cap;
    uint64_t delayed_seq;
    /* Durable store: this worker's writes since the last commit. */
    struct store_batch *batch;
    uint64_t next_sync;          /* monotonic ms: periodic fsync, failure probe */
    bool store_sync;             /* the batch holds puts: commit with fsync */
    bool store_unsynced;         /* committed without fsync since the last one */
    size_t store_bytes;          /* committed since the last free-space check */
    uint64_t queue_mem;          /* bytes of stored deliveries queued in memory */
    uint64_t batch_last_seq;     /* delivery whose put ends the batch, 0 = none */
    struct session *pumps;       /* to pump at the next iteration (references) */
    bool flushing;               /* in flush_dirty */
    size_t batch_last_count;     /* the batch's count just after that put */
    uint64_t next_space_check;   /* monotonic ms */
    /* Topics whose retained message this batch sets or clears (persist.c:
     * whether a topic has one, before the store knows). */
    struct level_table retained_pending;
    uint64_t retained_seed;
    _Atomic uint64_t commits;    /* persist_commit calls completed */
    atomic_bool retained_dirty;  /* a retained message set, not committed yet */
};

struct worker *worker_new(struct broker *b, int id);
void worker_free(struct worker *w);
int worker_start(struct worker *w);
void worker_join(struct worker *w);
/* Wake a worker (shutdown). */
void worker_wake(struct worker *w);

/* Route a message from this worker to every matching subscriber. Returns the
 * number of subscribers it was routed to. Does not take over m's reference. */
size_t worker_route(struct worker *w, struct message *m);

/* worker_route for a client's PUBLISH: when every subscriber it reached
 * that is online and not stalled has a backlog (session_backlog) above
 * the threshold, *backed_up is set to one of them with a reference taken,
 * for conn_pace(); NULL otherwise. */
size_t worker_route_from(struct worker *w, struct message *m, struct session **backed_up);

/* Stop reading from a publisher until `on` has worked off its backlog
 * (takes over the reference). The packet being handled is the last one
 * read; the rest of the input waits in the connection's buffer. */
void conn_pace(struct conn *c, struct session *on);

/* Deliver to a session that may live on another worker. Takes over the
 * delivery's message reference and one session reference. */
void worker_deliver(struct worker *w, struct session *s, struct delivery *d);

/* Close every connection with output waiting in this iteration, without
 * sending it (the store could not record what it acknowledges). */
void worker_drop_output(struct worker *w);

/* Queue bytes on a connection and put it on the flush list. Returns -1 when
 * out of memory (the connection is then closed). */
int conn_write(struct conn *c, const void *p, size_t n);
/* Reserve n bytes of output; commit with conn_commit. */
uint8_t *conn_reserve(struct conn *c, size_t n);
void conn_commit(struct conn *c, size_t n);
/* Close after flushing queued output. will: publish the will (abnormal). */
void conn_close(struct conn *c, bool will);

/* Hold a $delayed publish until due (monotonic ms), storing it with
 * persistence on. Takes over m's reference. */
void worker_delay(struct worker *w, struct message *m, uint64_t due);
/* The same for one read back from the store (startup): item's store key
 * is set, due is monotonic. Takes over item->msg's reference. */
void worker_delay_restore(struct worker *w, struct delayed_msg *item);

#endif
