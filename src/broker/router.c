/* router.c - the subscription index: a trie of topic-filter levels.
 *
 * Each node stands for one filter level. Exact children are a level table
 * (util/levels.h: an array for a few, a hash table for many); the '+' and
 * '#' children are separate pointers.
 * A node holds its plain subscriptions (an array, with a pointer index once
 * it is large) and its shared groups (array of groups, each with members).
 *
 * Costs: matching a topic of L levels is O(L) hash lookups for exact filters,
 * times the number of '+' branches that exist, plus O(1) per matching
 * subscription; it allocates nothing and walks the trie without recursion
 * (parent pointers), so deep filters cannot exhaust a stack. Subscribe and
 * unsubscribe are O(L) plus amortised O(1) table updates; emptied nodes are
 * freed at once, so memory follows the live subscriptions.
 */
#include "broker/router.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mqtt/topic.h"
#include "util/brlock.h"
#include "util/levels.h"

#define ROUTER_INDEX_MIN 16    /* subscriber lists get a pointer index above this */
#define ROUTER_MAX_COMPACT 4   /* in-place dedups tried when out[] fills */
#define ROUTER_HASH_CACHE 32   /* topic levels whose hash a match remembers */

/* ---- pointer -> index map (open addressing, linear probing) ---- */

struct pmap_ent {
    const void *key; /* NULL = empty */
    uint32_t val;
};

struct pmap {
    struct pmap_ent *t;
    uint32_t mask; /* size - 1; size is a power of two */
    uint32_t n;
};

static inline uint32_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

static bool pmap_get(const struct pmap *m, const void *key, uint32_t *val)
{
    if (!m->t)
        return false;
    for (uint32_t i = ptr_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->t[i].key == key) {
            if (val)
                *val = m->t[i].val;
            return true;
        }
        if (!m->t[i].key)
            return false;
    }
}

static void pmap_place(struct pmap_ent *t, uint32_t mask, const void *key, uint32_t val)
{
    uint32_t i = ptr_hash(key) & mask;
    while (t[i].key && t[i].key != key)
        i = (i + 1) & mask;
    t[i].key = key;
    t[i].val = val;
}

static int pmap_resize(struct pmap *m, uint32_t size)
{
    struct pmap_ent *t = calloc(size, sizeof(*t));
    if (!t)
        return -1;
    if (m->t) {
        for (uint32_t i = 0; i <= m->mask; i++)
            if (m->t[i].key)
                pmap_place(t, size - 1, m->t[i].key, m->t[i].val);
        free(m->t);
    }
    m->t = t;
    m->mask = size - 1;
    return 0;
}

/* Insert or update. -1 when out of memory (map unchanged). */
static int pmap_put(struct pmap *m, const void *key, uint32_t val)
{
    if (!m->t || (m->n + 1) * 2 > m->mask + 1) {
        if (pmap_resize(m, m->t ? (m->mask + 1) * 2 : 16) < 0)
            return -1;
    }
    uint32_t i = ptr_hash(key) & m->mask;
    while (m->t[i].key && m->t[i].key != key)
        i = (i + 1) & m->mask;
    if (!m->t[i].key)
        m->n++;
    m->t[i].key = key;
    m->t[i].val = val;
    return 0;
}

static void pmap_del(struct pmap *m, const void *key)
{
    if (!m->t)
        return;
    uint32_t i = ptr_hash(key) & m->mask;
    while (m->t[i].key != key) {
        if (!m->t[i].key)
            return;
        i = (i + 1) & m->mask;
    }
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & m->mask;
        if (!m->t[j].key)
            break;
        uint32_t home = ptr_hash(m->t[j].key) & m->mask;
        if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
            m->t[i] = m->t[j];
            i = j;
        }
    }
    m->t[i].key = NULL;
    m->n--;
}

static void pmap_clear(struct pmap *m)
{
    free(m->t);
    m->t = NULL;
    m->mask = 0;
    m->n = 0;
}

/* ---- subscriber lists (plain subscriptions of a node, group members) ---- */

struct rsub {
    void *sub;
    struct mqtt_sub_opts opts;
    uint32_t sub_id;
};

struct slist {
    struct rsub *v;
    uint32_t n, cap;
    struct pmap idx; /* sub -> position, only once n > ROUTER_INDEX_MIN */
};

static int64_t slist_find(const struct slist *l, const void *sub)
{
    if (l->idx.t) {
        uint32_t pos;
        return pmap_get(&l->idx, sub, &pos) ? (int64_t)pos : -1;
    }
    for (uint32_t i = 0; i < l->n; i++)
        if (l->v[i].sub == sub)
            return i;
    return -1;
}

static int slist_add(struct slist *l, void *sub, const struct mqtt_sub_opts *opts,
                     uint32_t sub_id)
{
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 2;
        struct rsub *v = realloc(l->v, (size_t)cap * sizeof(*v));
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    if (l->idx.t) {
        if (pmap_put(&l->idx, sub, l->n) < 0)
            return -1;
    } else if (l->n + 1 > ROUTER_INDEX_MIN) {
        /* Large lists (thousands of sessions on one topic) would make every
         * subscribe and unsubscribe a linear scan. Index is optional: if it
         * cannot be built we carry on with scans. */
        struct pmap idx = {0};
        bool ok = true;
        for (uint32_t i = 0; i < l->n && ok; i++)
            ok = pmap_put(&idx, l->v[i].sub, i) == 0;
        if (ok)
            ok = pmap_put(&idx, sub, l->n) == 0;
        if (ok)
            l->idx = idx;
        else
            pmap_clear(&idx);
    }
    l->v[l->n].sub = sub;
    l->v[l->n].opts = *opts;
    l->v[l->n].sub_id = sub_id;
    l->n++;
    return 0;
}

static void slist_remove_at(struct slist *l, uint32_t i)
{
    if (l->idx.t)
        pmap_del(&l->idx, l->v[i].sub);
    l->n--;
    if (i != l->n) {
        l->v[i] = l->v[l->n];
        if (l->idx.t)
            pmap_put(&l->idx, l->v[i].sub, i); /* key exists: no allocation */
    }
    if (l->n == 0) {
        free(l->v);
        l->v = NULL;
        l->cap = 0;
        pmap_clear(&l->idx);
    } else if (l->cap >= 16 && l->n * 4 <= l->cap) {
        struct rsub *v = realloc(l->v, (size_t)(l->cap / 2) * sizeof(*v));
        if (v) {
            l->v = v;
            l->cap /= 2;
        }
    }
}

static void slist_clear(struct slist *l)
{
    free(l->v);
    pmap_clear(&l->idx);
    memset(l, 0, sizeof(*l));
}

/* ---- trie nodes ---- */

struct rgroup {
    struct slist members;
    atomic_uint rr; /* round-robin position */
    uint32_t name_len;
    uint8_t name[];
};

struct rnode {
    struct level_key key;     /* first: the child tables point at it */
    struct rnode *parent;
    struct rnode *plus;       /* '+' child */
    struct rnode *hash;       /* '#' child */
    struct level_table kids;  /* exact children */
    struct slist subs;
    struct rgroup **groups;
    uint32_t ngroups, gcap;
    uint8_t level[];
};

struct router {
    struct brlock *lock;
    int nslots;
    struct router_ops ops;
    enum shared_strategy strategy;
    uint64_t seed; /* per-router hash key: colliding levels cannot be precomputed */
    struct rnode *root;
    struct pmap groups; /* live groups, so router_group_pick can validate */
    atomic_size_t count;
    atomic_size_t nodes;
};

static _Thread_local int router_thread_slot;
static _Thread_local uint64_t router_thread_rng;

void router_set_thread_slot(int slot)
{
    router_thread_slot = slot;
}

static inline int router_slot(const struct router *r)
{
    int s = router_thread_slot;
    int n = r->nslots;
    return (s >= 0 && s < n) ? s : (s < 0 ? 0 : s % n);
}

/* Typed views of the child table (util/levels.h): a key is the first
 * member of its node. */
static inline struct rnode *kids_find(const struct rnode *n, uint32_t h, const uint8_t *p,
                                      uint32_t len)
{
    return (struct rnode *)level_find(&n->kids, h, p, len);
}

static struct rnode *node_new(struct router *r, struct rnode *parent, const uint8_t *p,
                              uint32_t len, uint32_t h)
{
    struct rnode *n = calloc(1, sizeof(*n) + len);
    if (!n)
        return NULL;
    n->parent = parent;
    n->key.hval = h;
    n->key.len = len;
    n->key.bytes = n->level;
    if (len)
        memcpy(n->level, p, len);
    atomic_fetch_add_explicit(&r->nodes, 1, memory_order_relaxed);
    return n;
}

static void group_free(struct rgroup *g)
{
    slist_clear(&g->members);
    free(g);
}

static void node_free(struct router *r, struct rnode *n)
{
    for (uint32_t i = 0; i < n->ngroups; i++)
        group_free(n->groups[i]);
    free(n->groups);
    slist_clear(&n->subs);
    level_table_free(&n->kids);
    free(n);
    atomic_fetch_sub_explicit(&r->nodes, 1, memory_order_relaxed);
}

static inline bool node_empty(const struct rnode *n)
{
    return !n->subs.n && !n->ngroups && !n->kids.count && !n->plus && !n->hash;
}

/* Free n and its ancestors for as long as they hold nothing. */
static void prune(struct router *r, struct rnode *n)
{
    while (n != r->root && node_empty(n)) {
        struct rnode *p = n->parent;
        if (p->plus == n)
            p->plus = NULL;
        else if (p->hash == n)
            p->hash = NULL;
        else
            level_del(&p->kids, &n->key);
        node_free(r, n);
        n = p;
    }
}

/* Walk filter levels from the root; create missing nodes when create. On
 * failure returns NULL and, if create, *last is the deepest node reached
 * (for pruning). */
static struct rnode *node_walk(struct router *r, const uint8_t *f, size_t flen, bool create,
                               struct rnode **last)
{
    struct rnode *n = r->root;
    size_t pos = 0;
    for (;;) {
        const uint8_t *s = f + pos;
        const uint8_t *e = flen > pos ? memchr(s, '/', flen - pos) : NULL;
        uint32_t l = (uint32_t)(e ? (size_t)(e - s) : flen - pos);
        struct rnode *c;
        struct rnode **slot = NULL;
        uint32_t h = 0;
        if (l == 1 && s[0] == '+') {
            slot = &n->plus;
            c = *slot;
        } else if (l == 1 && s[0] == '#') {
            slot = &n->hash;
            c = *slot;
        } else {
            h = level_hash(r->seed, s, l);
            c = kids_find(n, h, s, l);
        }
        if (!c) {
            if (!create)
                return NULL;
            c = node_new(r, n, s, l, h);
            if (!c) {
                *last = n;
                return NULL;
            }
            if (slot) {
                *slot = c;
            } else if (level_add(&n->kids, &c->key) < 0) {
                node_free(r, c);
                *last = n;
                return NULL;
            }
        }
        n = c;
        if (!e)
            return n;
        pos = (size_t)(e - f) + 1;
    }
}

static struct rgroup *group_find(const struct rnode *n, const uint8_t *name, size_t len,
                                 uint32_t *index)
{
    for (uint32_t i = 0; i < n->ngroups; i++) {
        struct rgroup *g = n->groups[i];
        if (g->name_len == len && memcmp(g->name, name, len) == 0) {
            if (index)
                *index = i;
            return g;
        }
    }
    return NULL;
}

static void group_remove(struct router *r, struct rnode *n, uint32_t i)
{
    struct rgroup *g = n->groups[i];
    pmap_del(&r->groups, g);
    n->groups[i] = n->groups[--n->ngroups];
    if (!n->ngroups) {
        free(n->groups);
        n->groups = NULL;
        n->gcap = 0;
    }
    group_free(g);
}

static struct rgroup *group_add(struct router *r, struct rnode *n, const uint8_t *name,
                                size_t len)
{
    if (n->ngroups == n->gcap) {
        uint32_t cap = n->gcap ? n->gcap * 2 : 1;
        struct rgroup **v = realloc(n->groups, (size_t)cap * sizeof(*v));
        if (!v)
            return NULL;
        n->groups = v;
        n->gcap = cap;
    }
    struct rgroup *g = calloc(1, sizeof(*g) + len);
    if (!g)
        return NULL;
    atomic_init(&g->rr, 0);
    g->name_len = (uint32_t)len;
    memcpy(g->name, name, len);
    if (pmap_put(&r->groups, g, 0) < 0) {
        free(g);
        return NULL;
    }
    n->groups[n->ngroups++] = g;
    return g;
}

/* ---- public: lifecycle ---- */

struct router *router_new(const struct router_ops *ops, enum shared_strategy strategy,
                          int reader_slots)
{
    struct router *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (ops)
        r->ops = *ops;
    r->strategy = strategy;
    r->seed = level_seed(r);
    atomic_init(&r->count, 0);
    atomic_init(&r->nodes, 0);
    r->nslots = reader_slots < 1 ? 1 : reader_slots;
    r->lock = brlock_new(r->nslots);
    r->root = r->lock ? node_new(r, NULL, NULL, 0, 0) : NULL;
    if (!r->root) {
        brlock_free(r->lock);
        free(r);
        return NULL;
    }
    return r;
}

void router_free(struct router *r)
{
    if (!r)
        return;
    /* Post-order without recursion: detach a child and descend into it, free
     * a node once it has none left. A table of children is first compacted
     * into a plain array (it is only taken apart from here on). */
    struct rnode *n = r->root;
    while (n) {
        struct rnode *c = NULL;
        if (n->plus) {
            c = n->plus;
            n->plus = NULL;
        } else if (n->hash) {
            c = n->hash;
            n->hash = NULL;
        } else {
            c = (struct rnode *)level_pop(&n->kids);
        }
        if (c) {
            n = c;
            continue;
        }
        struct rnode *p = n->parent;
        node_free(r, n);
        n = p;
    }
    pmap_clear(&r->groups);
    brlock_free(r->lock);
    free(r);
}

/* ---- public: subscribe / unsubscribe ---- */

int router_subscribe(struct router *r, const uint8_t *filter, size_t len, void *sub,
                     const struct mqtt_sub_opts *opts, uint32_t sub_id)
{
    const uint8_t *gname = NULL, *f = filter;
    size_t glen = 0, flen = len;
    bool shared = topic_shared_split(filter, len, &gname, &glen, &f, &flen);
    int ret = -1;

    brlock_wrlock(r->lock);
    struct rnode *last = r->root;
    struct rnode *n = node_walk(r, f, flen, true, &last);
    if (!n) {
        prune(r, last);
        goto out;
    }
    struct slist *l = &n->subs;
    struct rgroup *g = NULL;
    uint32_t gi = 0;
    if (shared) {
        g = group_find(n, gname, glen, &gi);
        if (!g) {
            g = group_add(r, n, gname, glen);
            if (!g) {
                prune(r, n);
                goto out;
            }
            gi = n->ngroups - 1;
        }
        l = &g->members;
    }
    int64_t i = slist_find(l, sub);
    if (i >= 0) {
        l->v[i].opts = *opts;
        l->v[i].sub_id = sub_id;
        ret = 1;
    } else if (slist_add(l, sub, opts, sub_id) == 0) {
        atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
        ret = 0;
    } else {
        if (g && !g->members.n)
            group_remove(r, n, gi);
        prune(r, n);
    }
out:
    brlock_wrunlock(r->lock);
    return ret;
}

bool router_unsubscribe(struct router *r, const uint8_t *filter, size_t len, void *sub)
{
    const uint8_t *gname = NULL, *f = filter;
    size_t glen = 0, flen = len;
    bool shared = topic_shared_split(filter, len, &gname, &glen, &f, &flen);
    bool found = false;

    brlock_wrlock(r->lock);
    struct rnode *n = node_walk(r, f, flen, false, NULL);
    if (n) {
        if (shared) {
            uint32_t gi;
            struct rgroup *g = group_find(n, gname, glen, &gi);
            int64_t i = g ? slist_find(&g->members, sub) : -1;
            if (i >= 0) {
                slist_remove_at(&g->members, (uint32_t)i);
                if (!g->members.n)
                    group_remove(r, n, gi);
                found = true;
            }
        } else {
            int64_t i = slist_find(&n->subs, sub);
            if (i >= 0) {
                slist_remove_at(&n->subs, (uint32_t)i);
                found = true;
            }
        }
        if (found) {
            atomic_fetch_sub_explicit(&r->count, 1, memory_order_relaxed);
            prune(r, n);
        }
    }
    brlock_wrunlock(r->lock);
    return found;
}

/* ---- shared group member choice ---- */

static inline uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    if (!x)
        x = 0x9e3779b97f4a7c15ULL; /* zero is a fixed point */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static inline bool sub_online(const struct router *r, void *sub)
{
    return !r->ops.online || r->ops.online(sub);
}

static inline uint32_t sub_inflight(const struct router *r, void *sub)
{
    return r->ops.inflight ? r->ops.inflight(sub) : 0;
}

static inline bool sub_busy(const struct router *r, void *sub)
{
    return r->ops.busy && r->ops.busy(sub);
}

/* Choose a member of g other than exclude: online members first (for round
 * robin and random, those not backed up before those that are), any member
 * if none is online (the message then waits in that session). */
static const struct rsub *group_choose(const struct router *r, struct rgroup *g,
                                       const void *exclude, uint32_t origin_hash,
                                       uint64_t *rng)
{
    uint32_t n = g->members.n;
    const struct rsub *v = g->members.v;
    if (!n)
        return NULL;
    uint32_t start;
    switch (r->strategy) {
    case SHARED_RANDOM:
        start = (uint32_t)(xorshift64(rng ? rng : &router_thread_rng) % n);
        break;
    case SHARED_STICKY:
        start = origin_hash % n;
        break;
    default: /* round robin; least inflight rotates its start to spread ties */
        start = atomic_fetch_add_explicit(&g->rr, 1, memory_order_relaxed) % n;
        break;
    }
    const struct rsub *fallback = NULL;
    if (r->strategy == SHARED_LEAST_INFLIGHT) {
        const struct rsub *best = NULL;
        uint32_t best_n = 0, fallback_n = 0;
        for (uint32_t k = 0, i = start; k < n; k++, i = (i + 1 == n) ? 0 : i + 1) {
            const struct rsub *s = &v[i];
            if (s->sub == exclude)
                continue;
            uint32_t f = sub_inflight(r, s->sub);
            if (sub_online(r, s->sub)) {
                if (!best || f < best_n) {
                    best = s;
                    best_n = f;
                }
            } else if (!fallback || f < fallback_n) {
                fallback = s;
                fallback_n = f;
            }
        }
        return best ? best : fallback;
    }
    bool skip_busy = r->strategy != SHARED_STICKY;
    const struct rsub *busy = NULL;
    for (uint32_t k = 0, i = start; k < n; k++, i = (i + 1 == n) ? 0 : i + 1) {
        const struct rsub *s = &v[i];
        if (s->sub == exclude)
            continue;
        if (sub_online(r, s->sub)) {
            if (!skip_busy || !sub_busy(r, s->sub))
                return s;
            if (!busy)
                busy = s;
        } else if (!fallback) {
            fallback = s;
        }
    }
    return busy ? busy : fallback;
}

/* ---- matching ---- */

struct match_ctx {
    struct router *r;
    const struct route_query *q;
    struct route *out;
    size_t cap, n;
    size_t extra;       /* routes that did not fit (upper bound) */
    unsigned plain_nodes; /* nodes that contributed plain routes */
    unsigned compactions;
};

static inline bool route_before(const struct route *a, const struct route *b)
{
    bool sa = a->group != NULL, sb = b->group != NULL;
    if (sa != sb)
        return !sa; /* plain routes first */
    return (uintptr_t)a->sub < (uintptr_t)b->sub;
}

static void route_sift(struct route *v, size_t i, size_t n)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && route_before(&v[c], &v[c + 1]))
            c++;
        if (!route_before(&v[i], &v[c]))
            return;
        struct route t = v[i];
        v[i] = v[c];
        v[c] = t;
        i = c;
    }
}

/* In-place and allocation-free: insertion sort when short, heapsort else. */
static void route_sort(struct route *v, size_t n)
{
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            struct route t = v[i];
            size_t j = i;
            while (j > 0 && route_before(&t, &v[j - 1])) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = t;
        }
        return;
    }
    for (size_t i = n / 2; i-- > 0;)
        route_sift(v, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        struct route t = v[0];
        v[0] = v[end];
        v[end] = t;
        route_sift(v, 0, end);
    }
}

static void route_merge(struct route *a, const struct route *b)
{
    if (b->opts.qos > a->opts.qos)
        a->opts.qos = b->opts.qos;
    a->opts.retain_as_published |= b->opts.retain_as_published;
    for (uint32_t i = 0; i < b->sub_id_count; i++) {
        uint32_t id = b->sub_ids[i];
        bool have = false;
        for (uint32_t j = 0; j < a->sub_id_count && !have; j++)
            have = a->sub_ids[j] == id;
        if (!have && a->sub_id_count < 8)
            a->sub_ids[a->sub_id_count++] = id;
    }
}

/* Sort and merge plain routes of the same subscriber; returns the new count. */
static size_t route_dedup(struct route *v, size_t n)
{
    if (n < 2)
        return n;
    route_sort(v, n);
    size_t w = 1;
    for (size_t i = 1; i < n; i++) {
        if (!v[i].group && !v[w - 1].group && v[i].sub == v[w - 1].sub)
            route_merge(&v[w - 1], &v[i]);
        else
            v[w++] = v[i];
    }
    return w;
}

static struct route *route_slot(struct match_ctx *m)
{
    if (m->extra) {
        m->extra++;
        return NULL;
    }
    if (m->n == m->cap) {
        /* Duplicates may be what fills the array: merge them and go on. */
        if (m->plain_nodes > 1 && m->compactions < ROUTER_MAX_COMPACT) {
            m->compactions++;
            m->n = route_dedup(m->out, m->n);
        }
        if (m->n == m->cap) {
            m->extra = 1;
            return NULL;
        }
    }
    return &m->out[m->n++];
}

static void route_fill(struct route *rt, const struct rsub *s, const void *group)
{
    rt->sub = s->sub;
    rt->opts = s->opts;
    rt->sub_ids[0] = s->sub_id;
    rt->sub_id_count = s->sub_id ? 1 : 0;
    rt->group = group;
}

static void collect(struct match_ctx *m, const struct rnode *n)
{
    const struct route_query *q = m->q;
    if (n->subs.n) {
        m->plain_nodes++;
        const struct rsub *v = n->subs.v;
        uint32_t cnt = n->subs.n;
        bool check_local = q->origin != 0 && q->sub_id_of;
        if (!m->extra && cnt <= m->cap - m->n) {
            /* Common case: everything fits, no per-route capacity checks. */
            struct route *rt = m->out + m->n;
            for (uint32_t i = 0; i < cnt; i++) {
                if (check_local && v[i].opts.no_local && q->sub_id_of(v[i].sub) == q->origin)
                    continue;
                route_fill(rt++, &v[i], NULL);
            }
            m->n = (size_t)(rt - m->out);
        } else {
            for (uint32_t i = 0; i < cnt; i++) {
                if (check_local && v[i].opts.no_local && q->sub_id_of(v[i].sub) == q->origin)
                    continue;
                struct route *rt = route_slot(m);
                if (rt)
                    route_fill(rt, &v[i], NULL);
            }
        }
    }
    for (uint32_t i = 0; i < n->ngroups; i++) {
        struct rgroup *g = n->groups[i];
        const void *excl = g == q->exclude_group ? q->exclude_sub : NULL;
        const struct rsub *s = group_choose(m->r, g, excl, q->origin_hash, q->rng);
        if (!s)
            continue;
        struct route *rt = route_slot(m);
        if (rt)
            route_fill(rt, s, g);
    }
}

/* Start of the level before the one starting at pos (pos may be len + 1,
 * "past the last level"). */
static inline size_t prev_level(const uint8_t *t, size_t pos)
{
    size_t s = pos - 1;
    while (s > 0 && t[s - 1] != '/')
        s--;
    return s;
}

size_t router_match(struct router *r, const struct route_query *q, struct route *out,
                    size_t cap)
{
    struct match_ctx m = {.r = r, .q = q, .out = out, .cap = cap};
    const uint8_t *t = q->topic;
    size_t tlen = q->topic_len;
    bool dollar = tlen > 0 && t[0] == '$';
    uint32_t hcache[ROUTER_HASH_CACHE];
    uint32_t hvalid = 0; /* bit d: hcache[d] holds the hash of level d */
    int slot = router_slot(r);

    brlock_rdlock(r->lock, slot);
    struct rnode *root = r->root;
    struct rnode *n = root;
    size_t pos = 0;    /* start of the topic level n's children match; tlen+1 = none left */
    size_t depth = 0;  /* index of that level */
    enum { VISIT, PLUS, UP } st = VISIT;
    /* Depth-first over the trie with parent pointers instead of a stack:
     * at each node try the exact child, then the '+' child, then go up. */
    for (;;) {
        if (st == VISIT) {
            if (n->hash && !(n == root && dollar))
                collect(&m, n->hash); /* '#' also matches the parent level */
            if (pos > tlen) {
                collect(&m, n);
                st = UP;
                continue;
            }
            if (n->kids.count) {
                const uint8_t *s = t + pos;
                const uint8_t *e = memchr(s, '/', tlen - pos);
                uint32_t l = (uint32_t)(e ? (size_t)(e - s) : tlen - pos);
                uint32_t h;
                if (depth < ROUTER_HASH_CACHE && (hvalid >> depth & 1)) {
                    h = hcache[depth];
                } else {
                    h = level_hash(r->seed, s, l);
                    if (depth < ROUTER_HASH_CACHE) {
                        hcache[depth] = h;
                        hvalid |= 1u << depth;
                    }
                }
                struct rnode *c = kids_find(n, h, s, l);
                if (c) {
                    n = c;
                    pos += l + 1;
                    depth++;
                    continue;
                }
            }
            st = PLUS;
        }
        if (st == PLUS) {
            if (n->plus && pos <= tlen && !(n == root && dollar)) {
                const uint8_t *e = memchr(t + pos, '/', tlen - pos);
                n = n->plus;
                pos = (e ? (size_t)(e - t) : tlen) + 1;
                depth++;
                st = VISIT;
                continue;
            }
            st = UP;
        }
        /* UP: back to the parent; if we came from its exact child, its '+'
         * child is still to be tried. */
        if (n == root)
            break;
        struct rnode *p = n->parent;
        bool from_exact = p->plus != n;
        n = p;
        pos = prev_level(t, pos);
        depth--;
        st = from_exact ? PLUS : UP;
    }

    size_t total;
    if (m.extra) {
        total = m.n + m.extra; /* no references taken; caller retries */
    } else {
        if (m.plain_nodes > 1)
            m.n = route_dedup(out, m.n);
        total = m.n;
        if (r->ops.ref)
            for (size_t i = 0; i < m.n; i++)
                r->ops.ref(out[i].sub);
    }
    brlock_rdunlock(r->lock, slot);
    return total;
}

void *router_group_pick(struct router *r, const void *group, void *exclude_sub,
                        uint32_t origin_hash, uint64_t *rng)
{
    void *sub = NULL;
    int slot = router_slot(r);
    brlock_rdlock(r->lock, slot);
    /* The group may have emptied and been freed since the route was made. */
    if (group && pmap_get(&r->groups, group, NULL)) {
        const struct rsub *s =
            group_choose(r, (struct rgroup *)(uintptr_t)group, exclude_sub, origin_hash, rng);
        if (s) {
            sub = s->sub;
            if (r->ops.ref)
                r->ops.ref(sub);
        }
    }
    brlock_rdunlock(r->lock, slot);
    return sub;
}

size_t router_count(struct router *r)
{
    return atomic_load_explicit(&r->count, memory_order_relaxed);
}

size_t router_node_count(struct router *r)
{
    return atomic_load_explicit(&r->nodes, memory_order_relaxed);
}
