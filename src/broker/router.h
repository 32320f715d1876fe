/* router.h - the subscription index: topic filter trie with shared groups.
 *
 * One router serves every worker thread. Matching (on every PUBLISH) takes
 * only the calling thread's own reader slot of a big-reader lock, so readers
 * never contend with each other; subscribe and unsubscribe take every slot.
 *
 * Subscribers are opaque pointers (the broker's sessions). The router never
 * frees them: the broker unsubscribes a session everywhere before it drops
 * its own reference. While a match holds the read lock, ops->ref is called
 * for every route returned, so a subscriber outlives the route that names it.
 */
#ifndef PETREL_BROKER_ROUTER_H
#define PETREL_BROKER_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"
#include "mqtt/codec.h"

struct router;

struct router_ops {
    void (*ref)(void *sub);             /* take a reference (under read lock) */
    bool (*online)(void *sub);          /* connected now? (shared-group choice) */
    uint32_t (*inflight)(void *sub);    /* messages in flight (least-inflight) */
    bool (*busy)(void *sub);            /* backed up? round robin and random
                                           pass over busy members (optional) */
};

/* One delivery decided by a match. */
struct route {
    void *sub;
    struct mqtt_sub_opts opts; /* merged: highest QoS, retain_as_published OR'ed */
    uint32_t sub_ids[8];       /* subscription identifiers of every matching */
    uint32_t sub_id_count;     /* subscription (0 = none); at most 8 kept */
    const void *group;         /* non-NULL: chosen from this shared group */
};

/* Routing context of one PUBLISH. */
struct route_query {
    const uint8_t *topic;
    size_t topic_len;
    uint64_t origin;        /* publisher id: subscriptions with no_local whose */
    uint64_t (*sub_id_of)(void *sub); /* sub_id_of(sub) == origin are skipped */
    uint32_t origin_hash;   /* for SHARED_STICKY */
    const void *exclude_group; /* redelivery to a shared group: */
    void *exclude_sub;      /* pick another member than exclude_sub */
    uint64_t *rng;          /* caller's xorshift state for SHARED_RANDOM */
};

struct router *router_new(const struct router_ops *ops, enum shared_strategy strategy,
                          int reader_slots);
void router_free(struct router *r);

/* The calling thread reads through slot `slot` (0 <= slot < reader_slots).
 * Threads that never call this use slot 0. */
void router_set_thread_slot(int slot);

/* Add or replace sub's subscription to filter (which may be "$share/g/f" or
 * "$queue/f"). sub_id 0 = none. Returns 1 if it replaced an existing one,
 * 0 if new, -1 on out of memory. */
int router_subscribe(struct router *r, const uint8_t *filter, size_t len, void *sub,
                     const struct mqtt_sub_opts *opts, uint32_t sub_id);

/* Remove sub's subscription to filter. Returns true if one existed. */
bool router_unsubscribe(struct router *r, const uint8_t *filter, size_t len, void *sub);

/* Match a topic. Fills out[0..cap) and returns the number of routes; one
 * route per non-shared subscriber (overlapping subscriptions merged), plus
 * one route per matching shared group (the chosen member). ops->ref has been
 * called for each route returned. If the routes do not fit in cap, returns a
 * number > cap that is enough for a retry (an upper bound: duplicates that
 * did not fit are counted before merging); then out[] holds nothing usable
 * and NO references were taken: call again with a bigger array. */
size_t router_match(struct router *r, const struct route_query *q,
                    struct route *out, size_t cap);

/* Pick another member of a shared group for a message whose member went
 * away (exclude_sub). Returns the member with a reference taken, or NULL. */
void *router_group_pick(struct router *r, const void *group, void *exclude_sub,
                        uint32_t origin_hash, uint64_t *rng);

/* Number of subscriptions (for $SYS). */
size_t router_count(struct router *r);

/* Number of trie nodes, root included (tests: emptied branches are freed). */
size_t router_node_count(struct router *r);

#endif
