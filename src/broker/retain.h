/* retain.h - retained messages, indexed by topic for wildcard lookups.
 *
 * Shared by all workers behind a reader-writer lock: lookups happen on
 * SUBSCRIBE, updates on PUBLISH with the retain flag.
 */
#ifndef PETREL_BROKER_RETAIN_H
#define PETREL_BROKER_RETAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct message;
struct retain_store;

struct retain_store *retain_new(void);
void retain_free(struct retain_store *rs);

/* Store msg as the retained message of its topic (takes a reference), or
 * clear the topic's retained message when msg has an empty payload. */
void retain_set(struct retain_store *rs, struct message *msg);

/* Call fn for every retained message matching filter (plain filter, not
 * $share), with a reference the callee must drop with message_unref().
 * Expired messages (message_expired at now_ms) are skipped and removed.
 * Returns the number of messages passed to fn. */
size_t retain_match(struct retain_store *rs, const uint8_t *filter, size_t len,
                    uint64_t now_ms,
                    void (*fn)(void *arg, struct message *msg), void *arg);

size_t retain_count(struct retain_store *rs);

/* Number of trie nodes, root included (tests: cleared topics are freed). */
size_t retain_node_count(struct retain_store *rs);

#endif
