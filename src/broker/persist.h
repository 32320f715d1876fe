/* persist.h - what the broker writes to the durable store, when, and how it
 * is read back at startup (docs/storage.md, docs/architecture.md
 * "Durability").
 *
 * Every state change that must survive is written into the batch of the
 * worker making it; the batch is committed at the end of the loop
 * iteration, before the iteration's output is flushed, so with
 * `durability sync` no acknowledgement leaves before what it acknowledges
 * is on disk. With persistence off every call here is a no-op.
 *
 * Stored: persistent sessions (expiry > 0) with their will, subscriptions,
 * QoS 1/2 deliveries queued or in flight for them (with packet id and
 * state; beyond store_queue_memory, queued ones on disk only and read back
 * as the session catches up), inbound QoS 2 packet ids awaiting PUBREL,
 * retained messages and delayed publishes.
 */
#ifndef PETREL_BROKER_PERSIST_H
#define PETREL_BROKER_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"
#include "mqtt/codec.h"

struct worker;
struct session;
struct delivery;
struct message;

/* Open the store named by the configuration (persistence true). Returns 0
 * (b->store set, or NULL with persistence off) or -1 with the reason
 * logged. */
int persist_open(struct broker *b);
/* Read the store into the broker: sessions onto their workers, their
 * subscriptions into the router, queues and in-flight messages, inbound
 * QoS 2 state, retained messages. Before the workers start. */
int persist_load(struct broker *b);
/* At shutdown, after the workers stopped: commit what is left. */
void persist_close(struct broker *b);

/* Commit the worker's batch, at the end of every loop iteration: with an
 * fsync when it holds a promise (sync), or when durability_interval has
 * passed (periodic) or force is set.
 * On failure the connections with output waiting are closed without it, so
 * that no acknowledgement of an unstored message leaves. */
void persist_commit(struct worker *w, bool force);

/* The session record: at CONNECT, at disconnect, when its will goes. */
void persist_session(struct worker *w, struct session *s);
/* Every record of the session (session end, or no longer persistent). */
void persist_session_delete(struct worker *w, struct session *s);
void persist_sub(struct worker *w, struct session *s, const uint8_t *filter, size_t len,
                 const struct mqtt_sub_opts *o, uint32_t sub_id);
void persist_unsub(struct worker *w, struct session *s, const uint8_t *filter, size_t len);

/* A QoS 1/2 delivery to a persistent session was created (on any worker):
 * store it (and its message, once). Sets d->seq. */
void persist_delivery_new(struct worker *w, struct session *s, struct delivery *d);
/* The same with a sequence number taken earlier (persist_reserve_seqs;
 * 0 = take one now). */
void persist_delivery_new_at(struct worker *w, struct session *s, struct delivery *d,
                             uint64_t seq);
/* Reserve n consecutive sequence numbers for deliveries to s, so that
 * they sort where they were decided; returns the first, or 0 when s is
 * not stored. */
uint64_t persist_reserve_seqs(struct worker *w, struct session *s, size_t n);
/* Its packet id or state changed (sent, PUBREC received). */
void persist_delivery_update(struct worker *w, struct session *s, const struct delivery *d);
/* It is done (acknowledged, dropped, expired, moved): forget it. */
void persist_delivery_done(struct worker *w, struct session *s, struct delivery *d);

/* Queues larger than memory (session.c): a queued delivery stays on disk
 * only. Its record becomes a C record carrying the message; the caller
 * then drops its message reference. */
void persist_delivery_spill(struct worker *w, struct session *s, struct delivery *d);
/* Read up to max of the session's deliveries kept on disk back into its
 * queue, oldest first (session_refill_push). Returns how many, or -1. */
int persist_refill(struct worker *w, struct session *s, uint32_t max);

/* A $delayed publish is held (sets item's store key) or has gone out. */
struct delayed_msg;
void persist_delayed(struct worker *w, struct delayed_msg *item);
void persist_delayed_done(struct worker *w, const struct delayed_msg *item);

void persist_qos2_in(struct worker *w, struct session *s, uint16_t pid, bool add);
/* Set the retained message of m's topic (clear it, with an empty
 * payload): on disk with a store (except the broker's $SYS topics), in the
 * in-memory trie (retain.c) otherwise. */
void persist_retain(struct worker *w, struct message *m);
/* Are clients' retained messages on disk (then SUBSCRIBE reads them with
 * persist_retained_scan, besides matching the trie)? */
bool persist_retained_on_disk(const struct worker *w);
/* A SUBSCRIBE reads stored retained messages only once every worker that
 * had set one, not yet committed, when the subscription was added has
 * committed it (a retained message set later is routed to the new
 * subscription live). The barrier is NULL when nothing is pending (or out
 * of memory); free() it. */
uint64_t *persist_retained_barrier(struct worker *w);
bool persist_retained_barrier_passed(struct worker *w, const uint64_t *bar);

/* Where a read of the stored retained messages matching a filter goes on:
 * filter is owned (malloc'd), at is the key to go on from. */
struct retained_scan {
    uint8_t *filter;
    size_t filter_len;
    uint8_t *at;
    size_t at_len, at_cap;
    bool done;
};
/* Pass up to max_matches matching retained messages (a reference each) to
 * add, looking at no more than max_keys records, in topic order, from
 * where the last call stopped. Returns the number passed, -1 on a read
 * error; rs->done once the last record was looked at. */
int persist_retained_scan(struct worker *w, struct retained_scan *rs, size_t max_keys,
                          size_t max_matches, void (*add)(void *arg, struct message *m),
                          void *arg);
void persist_retained_scan_free(struct retained_scan *rs);

/* Non-zero while the store cannot be written, or its filesystem has less
 * than store_min_free left: the reason code to refuse QoS 1/2 PUBLISH
 * with (0x97 when the disk is full or nearly, else 0x80). */
uint8_t persist_failing(const struct worker *w);

#endif
