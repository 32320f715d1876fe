/* broker.h - the broker as a whole: configuration, the shared indexes
 * (router, retained store), the workers, and the statistics.
 *
 * There is one struct broker per process. Everything in it is either
 * read-only after startup, internally locked (router, retain store), or
 * atomic (counters).
 */
#ifndef PETREL_BROKER_BROKER_H
#define PETREL_BROKER_BROKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "conf/config.h"

struct router;
struct retain_store;
struct worker;
struct listener;
struct store;

/* Counters each worker keeps for itself (no shared cache lines on the hot
 * path); $SYS and metrics add them up. Written only by the owning worker
 * with relaxed stores, read by anyone with relaxed loads. */
struct worker_stats {
    _Atomic uint64_t msgs_received;   /* PUBLISH packets in */
    _Atomic uint64_t msgs_sent;       /* PUBLISH packets out */
    _Atomic uint64_t msgs_dropped;    /* deliveries dropped (limits, expiry) */
    _Atomic uint64_t bytes_received;
    _Atomic uint64_t bytes_sent;
    _Atomic uint64_t packets_received;
    _Atomic uint64_t packets_sent;
    _Atomic uint64_t connections_accepted;
    _Atomic uint64_t protocol_errors; /* malformed or invalid input */
    _Atomic uint64_t clients_connected;   /* gauge */
    _Atomic uint64_t sessions;            /* gauge: sessions owned */
};

#define STAT_ADD(st, field, n) \
    atomic_store_explicit(&(st)->field, \
        atomic_load_explicit(&(st)->field, memory_order_relaxed) + (n), memory_order_relaxed)
#define STAT_GET(st, field) atomic_load_explicit(&(st)->field, memory_order_relaxed)

struct broker {
    struct config *conf;
    struct router *router;
    struct retain_store *retain;
    struct worker **workers;
    int worker_count;
    struct listener *listeners;
    int listener_count;
    uint64_t start_mono_ms;
    atomic_bool stopping;
    atomic_int connections;        /* open sockets, for max_connections */
    atomic_uint_fast64_t next_session_id;
    atomic_uint_fast64_t clients_maximum;
    uint32_t hash_seed;
    struct store *store;           /* durable store, NULL without persistence */
    atomic_uint_fast64_t store_seq; /* ids of stored messages and deliveries */
    _Atomic uint8_t store_failed;  /* the last commit failed: the reason code
                                      for refused QoS 1/2 PUBLISH, else 0 */
    atomic_bool store_low;         /* free space below store_min_free */
    atomic_bool store_reopen_failed; /* store_recover failed (logged once) */
    atomic_size_t retained_stored; /* R records: retained messages on disk */
};

extern struct broker *g_broker;

/* Sum one worker_stats field across workers. */
uint64_t broker_stat_sum(const struct broker *b, size_t field_offset);
#define BROKER_STAT(b, field) broker_stat_sum((b), offsetof(struct worker_stats, field))

/* The worker that owns the session of this client id. */
int broker_worker_for(const struct broker *b, const uint8_t *client_id, size_t len);

#endif
