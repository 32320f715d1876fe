/* bench.h - shared types of petrel-bench: run configuration, connections,
 * worker threads and the counters the main thread reads while they run.
 *
 * main.c parses options, builds the connection set of a scenario and
 * reports; client.c runs the MQTT client state machines on epoll worker
 * threads; hist.c and seq.c hold the measurement structures.
 */
#ifndef PETREL_BENCH_H
#define PETREL_BENCH_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"
#include "seq.h"

#define PAYLOAD_MIN 16 /* publisher id u32, sequence u32, send time u64 */

enum scenario { SC_CONN, SC_PUB, SC_SUB, SC_FANIN, SC_FANOUT, SC_P2P, SC_SHARED };

/* Run phases, set by the main thread, read by the workers. */
enum phase {
    PH_SUBS = 1, /* connect and subscribe the subscribers (and idle conns) */
    PH_PUBS,     /* connect the publishers */
    PH_RUN,      /* publish */
    PH_STOP,     /* publishers stop; deliveries drain */
    PH_QUIT,     /* disconnect and exit */
};

struct bench_cfg {
    enum scenario sc;
    const char *host;
    struct sockaddr_in addr;
    uint8_t version;
    uint8_t qos;
    uint32_t size;
    double rate;          /* per publisher, msgs/s; 0 = max */
    uint32_t inflight;
    double duration, warmup;
    uint32_t pubs, subs, conns;
    uint64_t count;       /* messages per publisher; 0 = until duration */
    const char *prefix;
    const char *id_prefix;   /* client ids; NULL = "pb<pid>" */
    const char *filter;   /* sub scenario */
    bool clean;
    int64_t session_expiry; /* -1: not sent */
    uint32_t ifaddrs;     /* source addresses 127.0.0.1..N; 0/1 = kernel choice */
    int pid;
    uint32_t threads;
    bool json;
    double conn_rate;
    uint16_t keepalive;
    double drain;         /* max seconds to wait for in-flight deliveries */
    double sub_stall;     /* subscribers do not read for this long after start */
    uint32_t window_bits; /* sequence tracker window */
};

enum conn_role { ROLE_PUB, ROLE_SUB, ROLE_IDLE };
enum conn_state { CS_NEW, CS_TCP, CS_CONNACK, CS_SUBACK, CS_READY, CS_CLOSED };

/* A group of sequence trackers a subscriber updates: trackers for publisher
 * ids lo .. lo+n-1. Shared-subscription groups share one set with a lock. */
struct trkset {
    struct seqtrk *t;
    uint32_t lo, n;
    bool locked;
    atomic_flag lock;
};

struct worker;

struct conn {
    struct worker *w;
    int fd;
    uint8_t role, state;
    bool in_dirty, want_out, pub_done;
    uint32_t idx;        /* publisher id, subscriber id or connection number */
    uint32_t ev;         /* epoll events currently registered */
    /* output: accumulated, written once per loop iteration */
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    /* input carried over between reads (a partial packet) */
    uint8_t *in;
    size_t in_len, in_cap;
    uint64_t t_connect;  /* connect() time */
    uint64_t last_tx;
    /* publisher */
    const char *topic;
    uint16_t topic_len;
    uint32_t seq;
    uint32_t inflight, max_inflight;
    uint16_t next_pid;
    uint64_t *pid_used;  /* 65536-bit set of packet ids in flight */
    uint64_t next_due;
    /* subscriber */
    const char *sub_filter;
    struct trkset *trk;
};

/* Counters a worker writes and the main thread reads (single writer:
 * relaxed loads and stores, no read-modify-write needed). */
struct wstats {
    _Atomic uint64_t conn_ok, conn_fail, closed, ready;
    _Atomic uint64_t sent, sent_win, acked, inflight;
    _Atomic uint64_t recv, recv_win, uniq, stray, pub_errors, proto_errors;
    _Atomic uint64_t last_recv_ns, pubs_done;
};

struct worker {
    pthread_t th;
    uint32_t id;
    int ep;
    const struct bench_cfg *cfg;
    size_t nconn;          /* nsub + npub */
    struct conn **subs;    /* subscribers and idle connections */
    size_t nsub;
    struct conn **pubs;
    size_t npub;
    size_t next_sub, next_pub;
    size_t pub_rr;         /* publisher that goes first in the next iteration */ /* connection attempts are started in order */
    uint64_t sub_t0, pub_t0; /* when this worker began connecting each list */
    uint32_t pending;      /* TCP/CONNACK/SUBACK in progress */
    bool stalled, busy;
    uint64_t stall_until;
    struct conn **dirty;
    size_t ndirty;
    uint8_t *rbuf;
    size_t rbuf_cap;
    uint8_t *payload;      /* template payload of cfg->size bytes */
    struct hist lat;       /* delivery latency (ns) */
    struct hist conn_lat;  /* connect() to CONNACK (ns) */
    struct wstats st;
    char errmsg[160];
};

/* Shared run state. */
extern _Atomic int g_phase;
extern _Atomic uint64_t g_run_start;  /* publishing starts (ns) */
extern _Atomic uint64_t g_win_start;  /* measured window (ns, monotonic) */
extern _Atomic uint64_t g_win_end;

uint64_t now_ns(void);
void *worker_main(void *arg);
int worker_init(struct worker *w, const struct bench_cfg *cfg, uint32_t id);
void worker_free(struct worker *w);

static inline uint64_t ld(const _Atomic uint64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}
static inline void st_add(_Atomic uint64_t *a, uint64_t v)
{
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

#endif
