/* retain.c - the retained-message store: a trie of topic levels.
 *
 * Each node is one topic level and holds at most one message (with a
 * reference). A node's children are a level table (util/levels.h): an
 * exact level costs O(1) even under a node with a million children.
 *
 * Costs: retain_set is O(levels); retain_match is O(levels) for an exact
 * filter and O(visited nodes) with wildcards ('+' visits the children of one
 * level, '#' the subtree), never a scan of the whole store. Walks use parent
 * pointers rather than recursion, so deep topics cannot exhaust a stack.
 *
 * Locking: one pthread rwlock. retain_match collects references under the
 * read lock and calls fn after releasing it. Expired messages met by a match
 * are removed right after it under the write lock (only if the node still
 * holds that same message); a retain_set on the topic replaces them too.
 */
#include "broker/retain.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/message.h"
#include "util/levels.h"

#define RETAIN_BATCH 64 /* matches collected on the stack before the heap */

struct tnode {
    struct level_key key;    /* first: the child tables point at it */
    struct tnode *parent;
    struct level_table kids;
    struct message *msg;
    uint8_t level[];
};

/* Typed views of the child table (util/levels.h): a key is the first
 * member of its node. */
static inline struct tnode *tnode_of(const struct level_key *k)
{
    return (struct tnode *)k;
}

static inline struct tnode *tkids_find(const struct tnode *n, uint32_t h, const uint8_t *p,
                                       uint32_t len)
{
    return tnode_of(level_find(&n->kids, h, p, len));
}

static inline int tkids_add(struct tnode *n, struct tnode *c)
{
    return level_add(&n->kids, &c->key);
}

static inline struct tnode *tkids_from(const struct tnode *n, uint32_t i, bool skip_dollar)
{
    return tnode_of(level_from(&n->kids, i, skip_dollar));
}

static inline struct tnode *tkids_next(const struct tnode *n, const struct tnode *c,
                                       bool skip_dollar)
{
    return tnode_of(level_next(&n->kids, &c->key, skip_dollar));
}

struct retain_store {
    pthread_rwlock_t lock;
    struct tnode *root;
    uint64_t seed;
    atomic_size_t count;
    atomic_size_t nodes;
};

static struct tnode *tnode_new(struct retain_store *rs, struct tnode *parent,
                               const uint8_t *p, uint32_t len, uint32_t h)
{
    struct tnode *n = calloc(1, sizeof(*n) + len);
    if (!n)
        return NULL;
    n->parent = parent;
    n->key.hval = h;
    n->key.len = len;
    n->key.bytes = n->level;
    if (len)
        memcpy(n->level, p, len);
    atomic_fetch_add_explicit(&rs->nodes, 1, memory_order_relaxed);
    return n;
}

static void tnode_free(struct retain_store *rs, struct tnode *n)
{
    level_table_free(&n->kids);
    free(n);
    atomic_fetch_sub_explicit(&rs->nodes, 1, memory_order_relaxed);
}

static void tprune(struct retain_store *rs, struct tnode *n)
{
    while (n != rs->root && !n->msg && !n->kids.count) {
        struct tnode *p = n->parent;
        level_del(&p->kids, &n->key);
        tnode_free(rs, n);
        n = p;
    }
}

/* Find the node of a topic; with create, make missing ones (on failure
 * returns NULL and *last is the deepest node reached). */
static struct tnode *tnode_walk(struct retain_store *rs, const uint8_t *t, size_t tlen,
                                bool create, struct tnode **last)
{
    struct tnode *n = rs->root;
    size_t pos = 0;
    for (;;) {
        const uint8_t *s = t + pos;
        const uint8_t *e = tlen > pos ? memchr(s, '/', tlen - pos) : NULL;
        uint32_t l = (uint32_t)(e ? (size_t)(e - s) : tlen - pos);
        uint32_t h = level_hash(rs->seed, s, l);
        struct tnode *c = tkids_find(n, h, s, l);
        if (!c) {
            if (!create)
                return NULL;
            c = tnode_new(rs, n, s, l, h);
            if (!c || tkids_add(n, c) < 0) {
                if (c)
                    tnode_free(rs, c);
                *last = n;
                return NULL;
            }
        }
        n = c;
        if (!e)
            return n;
        pos = (size_t)(e - t) + 1;
    }
}

struct retain_store *retain_new(void)
{
    struct retain_store *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return NULL;
    if (pthread_rwlock_init(&rs->lock, NULL) != 0) {
        free(rs);
        return NULL;
    }
    atomic_init(&rs->count, 0);
    atomic_init(&rs->nodes, 0);
    rs->seed = level_seed(rs);
    rs->root = tnode_new(rs, NULL, NULL, 0, 0);
    if (!rs->root) {
        pthread_rwlock_destroy(&rs->lock);
        free(rs);
        return NULL;
    }
    return rs;
}

void retain_free(struct retain_store *rs)
{
    if (!rs)
        return;
    /* Post-order without recursion; a child table is compacted into an array
     * first since it is only taken apart from here on. */
    struct tnode *n = rs->root;
    while (n) {
        struct level_key *k = level_pop(&n->kids);
        if (k) {
            n = tnode_of(k);
            continue;
        }
        struct tnode *p = n->parent;
        message_unref(n->msg);
        tnode_free(rs, n);
        n = p;
    }
    pthread_rwlock_destroy(&rs->lock);
    free(rs);
}

void retain_set(struct retain_store *rs, struct message *msg)
{
    const uint8_t *t = (const uint8_t *)msg->topic;
    struct message *old = NULL;

    pthread_rwlock_wrlock(&rs->lock);
    if (msg->payload_len == 0) {
        struct tnode *n = tnode_walk(rs, t, msg->topic_len, false, NULL);
        if (n && n->msg) {
            old = n->msg;
            n->msg = NULL;
            atomic_fetch_sub_explicit(&rs->count, 1, memory_order_relaxed);
            tprune(rs, n);
        }
    } else {
        struct tnode *last = rs->root;
        struct tnode *n = tnode_walk(rs, t, msg->topic_len, true, &last);
        if (n) {
            old = n->msg;
            n->msg = message_ref(msg);
            if (!old)
                atomic_fetch_add_explicit(&rs->count, 1, memory_order_relaxed);
        } else {
            /* Out of memory: the message is not retained; undo new nodes. */
            tprune(rs, last);
        }
    }
    pthread_rwlock_unlock(&rs->lock);
    message_unref(old); /* freeing can wait until the lock is released */
}

/* A growable list of message pointers that starts on the caller's stack. */
struct mlist {
    struct message **v;
    size_t n, cap;
    bool heap, full;
};

static void mlist_push(struct mlist *l, struct message *m)
{
    if (l->n == l->cap) {
        size_t cap = l->cap * 2;
        struct message **v = l->heap ? realloc(l->v, cap * sizeof(*v))
                                     : malloc(cap * sizeof(*v));
        if (!v) {
            l->full = true; /* out of memory: deliver what was collected */
            return;
        }
        if (!l->heap)
            memcpy(v, l->v, l->n * sizeof(*v));
        l->v = v;
        l->cap = cap;
        l->heap = true;
    }
    l->v[l->n++] = message_ref(m);
}

struct rmatch {
    struct mlist live, expired;
    uint64_t now_ms;
};

static inline void emit(struct rmatch *m, const struct tnode *n)
{
    if (!n->msg)
        return;
    if (message_expired(n->msg, m->now_ms))
        mlist_push(&m->expired, n->msg);
    else
        mlist_push(&m->live, n->msg);
}

/* Every message in the subtree of top, top included. */
static void emit_subtree(struct rmatch *m, const struct tnode *top, bool skip_dollar)
{
    const struct tnode *n = top;
    emit(m, n);
    for (;;) {
        const struct tnode *c = tkids_from(n, 0, skip_dollar && n == top);
        if (c) {
            n = c;
            emit(m, n);
            continue;
        }
        for (;;) {
            if (n == top)
                return;
            const struct tnode *p = n->parent;
            c = tkids_next(p, n, skip_dollar && p == top);
            if (c) {
                n = c;
                emit(m, n);
                break;
            }
            n = p;
        }
    }
}

static inline bool level_is(const uint8_t *f, size_t flen, size_t pos, uint8_t ch)
{
    return pos < flen && f[pos] == ch && (pos + 1 == flen || f[pos + 1] == '/');
}

static void match_walk(struct retain_store *rs, struct rmatch *m, const uint8_t *f,
                       size_t flen)
{
    const struct tnode *root = rs->root;
    const struct tnode *n = root;
    size_t pos = 0; /* start of the filter level n's children match; flen+1 = none */
    bool down = true;
    for (;;) {
        if (m->live.full || m->expired.full)
            return;
        if (down) {
            down = false;
            if (pos > flen) {
                emit(m, n);
                continue;
            }
            const uint8_t *s = f + pos;
            const uint8_t *e = memchr(s, '/', flen - pos);
            size_t l = e ? (size_t)(e - s) : flen - pos;
            size_t next = pos + l + 1;
            const struct tnode *c;
            if (level_is(f, flen, pos, '#')) {
                emit_subtree(m, n, n == root);
                continue;
            }
            if (level_is(f, flen, pos, '+'))
                c = tkids_from(n, 0, n == root);
            else
                c = tkids_find(n, level_hash(rs->seed, s, l), s, (uint32_t)l);
            if (c) {
                n = c;
                pos = next;
                down = true;
            }
            continue;
        }
        /* Up: to the next sibling if n was reached through '+', else to the
         * parent. */
        if (n == root)
            return;
        const struct tnode *p = n->parent;
        size_t s = pos - 1;
        while (s > 0 && f[s - 1] != '/')
            s--;
        if (level_is(f, flen, s, '+')) {
            const struct tnode *c = tkids_next(p, n, p == root);
            if (c) {
                n = c;
                down = true;
                continue;
            }
        }
        n = p;
        pos = s;
    }
}

size_t retain_match(struct retain_store *rs, const uint8_t *filter, size_t len,
                    uint64_t now_ms, void (*fn)(void *arg, struct message *msg), void *arg)
{
    struct message *live_buf[RETAIN_BATCH], *exp_buf[RETAIN_BATCH];
    struct rmatch m = {
        .live = {.v = live_buf, .cap = RETAIN_BATCH},
        .expired = {.v = exp_buf, .cap = RETAIN_BATCH},
        .now_ms = now_ms,
    };
    if (len == 0)
        return 0;

    pthread_rwlock_rdlock(&rs->lock);
    match_walk(rs, &m, filter, len);
    pthread_rwlock_unlock(&rs->lock);

    if (m.expired.n) {
        /* Remove what expired, unless the topic was set again meanwhile.
         * Dropping the store's reference under the lock never frees: the
         * list still holds one, released after the lock. */
        pthread_rwlock_wrlock(&rs->lock);
        for (size_t i = 0; i < m.expired.n; i++) {
            struct message *msg = m.expired.v[i];
            struct tnode *n =
                tnode_walk(rs, (const uint8_t *)msg->topic, msg->topic_len, false, NULL);
            if (n && n->msg == msg) {
                n->msg = NULL;
                atomic_fetch_sub_explicit(&rs->count, 1, memory_order_relaxed);
                tprune(rs, n);
                message_unref(msg);
            }
        }
        pthread_rwlock_unlock(&rs->lock);
        for (size_t i = 0; i < m.expired.n; i++)
            message_unref(m.expired.v[i]);
        if (m.expired.heap)
            free(m.expired.v);
    }

    for (size_t i = 0; i < m.live.n; i++)
        fn(arg, m.live.v[i]); /* the reference passes to fn */
    size_t delivered = m.live.n;
    if (m.live.heap)
        free(m.live.v);
    return delivered;
}

size_t retain_count(struct retain_store *rs)
{
    return atomic_load_explicit(&rs->count, memory_order_relaxed);
}

size_t retain_node_count(struct retain_store *rs)
{
    return atomic_load_explicit(&rs->nodes, memory_order_relaxed);
}
