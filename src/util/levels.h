/* levels.h - the children of a topic-level trie node, by level.
 *
 * The router and the retained store are both tries with one node per topic
 * level. A node's exact children live here: in a linear array while there
 * are at most LEVELS_LINEAR of them (the common case: a scan of a few
 * pointers beats hashing), in an open-addressing hash table (linear probing,
 * load at most 1/2) above that, so an exact level costs O(1) even under a
 * node with a million children.
 *
 * A trie node embeds a struct level_key as its FIRST member; the table
 * stores pointers to those keys, and the owner casts them back to its node
 * type. Levels are hashed with a per-trie random seed, so colliding levels
 * cannot be precomputed by a client.
 */
#ifndef PETREL_UTIL_LEVELS_H
#define PETREL_UTIL_LEVELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEVELS_LINEAR 8     /* children kept in an array up to this many */
#define LEVELS_TABLE_MIN 32 /* smallest hash table */

struct level_key {
    uint32_t hval;         /* level_hash() of the bytes */
    uint32_t len;
    const uint8_t *bytes;  /* the level, usually in the node's own allocation */
};

struct level_table {
    struct level_key **slots; /* array (cap <= LEVELS_LINEAR) or hash table */
    uint32_t count, cap;
};

uint32_t level_hash(uint64_t seed, const uint8_t *p, size_t n);
/* A fresh seed for one trie (from its address and the clock). */
uint64_t level_seed(const void *owner);

struct level_key *level_find(const struct level_table *t, uint32_t h, const uint8_t *p,
                             uint32_t len);
/* Add a child not yet in the table. Returns -1 when out of memory. */
int level_add(struct level_table *t, struct level_key *k);
/* Remove a child that is in the table (shrinks with hysteresis). */
void level_del(struct level_table *t, struct level_key *k);

/* Children in slot order, for wildcard walks: the first at or after slot i,
 * and the one after k. skip_dollar leaves out levels starting with '$' (a
 * leading wildcard does not match them, MQTT 4.7.2). NULL at the end. */
struct level_key *level_from(const struct level_table *t, uint32_t i, bool skip_dollar);
struct level_key *level_next(const struct level_table *t, const struct level_key *k,
                             bool skip_dollar);

/* Teardown: take any child out without rehashing (the table is only taken
 * apart from then on), NULL when empty. */
struct level_key *level_pop(struct level_table *t);
void level_table_free(struct level_table *t);

#endif
