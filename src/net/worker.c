/* worker.c - the worker threads' event loop.
 *
 * One iteration: wait for events; read each readable connection once into
 * the worker's shared read buffer and handle every whole packet in it;
 * accept new connections; take the inbox (deliveries and connections from
 * other workers); then hand this iteration's cross-worker deliveries over
 * in one batch per target, and write each connection's pending output with
 * one write() per connection. Timers (keepalive, wills, session expiry,
 * delayed publish, $SYS) run from a tick every TICK_MS.
 *
 * Reading into a per-worker buffer rather than a per-connection one means
 * an idle connection holds no buffer memory: only a partial packet left
 * over at the end of a read is copied into the connection's own buffer.
 */
#include "net/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "auth/acl.h"
#include "broker/message.h"
#include "broker/persist.h"
#include "broker/protocol.h"
#include "broker/retain.h"
#include "broker/router.h"
#include "broker/sys.h"
#include "mqtt/codec.h"
#include "net/conn.h"
#include "net/listener.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"

#define READ_BUF_SIZE (64 * 1024)
#define MAX_EVENTS 256
#define TICK_MS 250
#define CONNECT_TIMEOUT_MS 10000
/* How long a closing connection may take to write its last output: a peer
 * that does not read must not keep its connection (and session) forever. */
#define CLOSE_TIMEOUT_MS 5000
/* Past this much output the socket did not take, a connection's input is
 * not read until the output drains: a client that sends without reading
 * its acknowledgements must not grow the broker's memory without bound. */
#define OUT_PAUSE_READ (4u << 20)
#define ACCEPTS_PER_WAKEUP 64

struct worker *worker_new(struct broker *b, int id)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->ev_kind = EV_WAKE;
    w->id = id;
    w->broker = b;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->rbuf_cap = READ_BUF_SIZE;
    w->rbuf = malloc(w->rbuf_cap);
    w->routes_cap = 64;
    w->routes = malloc(sizeof(*w->routes) * w->routes_cap);
    w->outbox = calloc((size_t)b->worker_count, sizeof(*w->outbox));
    w->rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)(id + 1) * 0xBF58476D1CE4E5B9ull) ^ clock_wall_ms();
    pthread_mutex_init(&w->inbox.lock, NULL);
    pthread_mutex_init(&w->loop_lock, NULL);
    session_table_init(&w->sessions);
    if (w->epfd < 0 || w->wakefd < 0 || !w->rbuf || !w->routes || !w->outbox)
        goto fail;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev) < 0)
        goto fail;
    for (int i = 0; i < b->listener_count; i++) {
        struct epoll_event lev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &b->listeners[i]};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, b->listeners[i].fd, &lev) < 0)
            goto fail;
    }
    return w;
fail:
    log_error("worker %d: cannot start: %s", id, strerror(errno));
    worker_free(w);
    return NULL;
}

/* ---- output ----------------------------------------------------------- */

static void mark_dirty(struct conn *c)
{
    c->buffers_used = true;
    if (!c->dirty) {
        c->dirty = true;
        c->dirty_next = c->worker->dirty;
        c->worker->dirty = c;
    }
}

uint8_t *conn_reserve(struct conn *c, size_t n)
{
    uint8_t *p = buf_reserve(&c->out, n);
    if (!p) {
        log_error("client %s: out of memory for output, closing", c->peer);
        conn_close(c, true);
    }
    return p;
}

void conn_commit(struct conn *c, size_t n)
{
    buf_commit(&c->out, n);
    STAT_ADD(&c->worker->stats, packets_sent, 1);
    mark_dirty(c);
}

int conn_write(struct conn *c, const void *p, size_t n)
{
    uint8_t *d = conn_reserve(c, n);
    if (!d)
        return -1;
    memcpy(d, p, n);
    conn_commit(c, n);
    return 0;
}

void conn_close(struct conn *c, bool will)
{
    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    c->will_on_close = will;
    c->deadline = c->worker->now + CLOSE_TIMEOUT_MS;
    mark_dirty(c); /* the flush pass closes it after writing what is queued */
}

/* A closing connection whose output can no longer be delivered (the peer
 * went away, or did not read in time): drop the output so that the next
 * flush pass destroys it. */
static void conn_abandon(struct conn *c)
{
    buf_consume(&c->out, buf_used(&c->out));
    mark_dirty(c);
}

void worker_drop_output(struct worker *w)
{
    for (struct conn *c = w->dirty; c; c = c->dirty_next) {
        if (!buf_used(&c->out))
            continue;
        log_warning("client %s: closing without its pending output (store failure)",
                    c->client_id ? c->client_id : c->peer);
        if (c->state != CONN_CLOSING) {
            c->state = CONN_CLOSING;
            c->will_on_close = true;
        }
        buf_consume(&c->out, buf_used(&c->out));
    }
}

static void set_events(struct worker *w, struct conn *c, bool want_write, bool paused)
{
    paused = paused || c->paced;
    if (c->want_write == want_write && c->read_paused == paused)
        return;
    struct epoll_event ev = {.events = (paused ? 0 : EPOLLIN) | (want_write ? EPOLLOUT : 0),
                             .data.ptr = c};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_write = want_write;
    c->read_paused = paused;
}

static void unpace(struct worker *w, struct conn *c)
{
    struct conn **pp = &w->paced;
    while (*pp && *pp != c)
        pp = &(*pp)->paced_next;
    if (*pp)
        *pp = c->paced_next;
    c->paced = false;
    c->paced_next = NULL;
    if (c->pace_on) {
        session_unref(c->pace_on);
        c->pace_on = NULL;
    }
}

/* Take a connection off this worker: its epoll set and connection list. */
static void conn_unlink(struct worker *w, struct conn *c)
{
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->conn_count--;
}

static void conn_destroy(struct worker *w, struct conn *c)
{
    if (c->paced)
        unpace(w, c);
    protocol_conn_closed(w, c);
    conn_unlink(w, c);
    close(c->fd);
    atomic_fetch_sub(&w->broker->connections, 1);
    atomic_fetch_sub(&((struct listener *)c->listener)->connections, 1);
    buf_free(&c->in);
    buf_free(&c->out);
    if (c->alias_in) {
        for (uint32_t i = 0; i <= c->alias_in_max; i++)
            free(c->alias_in[i]);
        free(c->alias_in);
        free(c->alias_in_len);
    }
    for (uint16_t i = 0; i < c->alias_out_count; i++)
        free(c->alias_out[i].topic);
    free(c->alias_out);
    free(c->client_id);
    acl_rules_free(c->acl);
    free(c);
}

/* Write what is queued; returns -1 if the connection failed. */
static int conn_flush(struct worker *w, struct conn *c)
{
    while (buf_used(&c->out)) {
        ssize_t n = send(c->fd, c->out.data + c->out.off, buf_used(&c->out), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_events(w, c, true, buf_used(&c->out) > OUT_PAUSE_READ);
                return 0;
            }
            return -1;
        }
        STAT_ADD(&w->stats, bytes_sent, (uint64_t)n);
        buf_consume(&c->out, (size_t)n);
        if (c->session && c->session->conn == c)
            session_output_written(w, c->session, buf_used(&c->out));
        /* While its input is not read, a client that reads its output
         * shows it is alive: its PINGREQs wait unread in the socket. */
        if (c->read_paused && n > 0)
            c->last_rx = w->now;
    }
    set_events(w, c, false, false);
    return 0;
}

static void flush_dirty(struct worker *w)
{
    w->flushing = true;
    while (w->dirty) {
        struct conn *c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty = false;
        int rc = conn_flush(w, c);
        if (rc < 0 && c->state != CONN_CLOSING) {
            c->state = CONN_CLOSING;
            c->will_on_close = true;
        }
        /* A closing connection goes once its last bytes are out (or the
         * socket failed): DISCONNECT and CONNACK refusals reach the client. */
        if (c->state == CONN_CLOSING && (rc < 0 || buf_used(&c->out) == 0))
            conn_destroy(w, c);
    }
    w->flushing = false;
}

/* ---- cross-worker delivery -------------------------------------------- */

void worker_deliver(struct worker *w, struct session *s, struct delivery *d)
{
    struct worker *target = s->worker;
    if (target == w) {
        session_deliver(w, s, d);
        session_unref(s);
        return;
    }
    struct delivery_batch *b = w->outbox[target->id];
    if (!b || b->count == b->cap) {
        size_t cap = b ? b->cap * 2 : 64;
        struct delivery_batch *nb = malloc(sizeof(*nb) + cap * sizeof(nb->items[0]));
        if (!nb) {
            message_unref(d->msg);
            session_unref(s);
            STAT_ADD(&w->stats, msgs_dropped, 1);
            return;
        }
        nb->cap = cap;
        nb->count = 0;
        nb->next = NULL;
        if (b) {
            memcpy(nb->items, b->items, b->count * sizeof(b->items[0]));
            nb->count = b->count;
            free(b);
        }
        w->outbox[target->id] = b = nb;
    }
    b->items[b->count].session = s;
    b->items[b->count].d = *d;
    b->count++;
    atomic_fetch_add_explicit(&s->incoming, 1, memory_order_relaxed);
}

static void inbox_signal(struct worker *target)
{
    uint64_t one = 1;
    ssize_t rc = write(target->wakefd, &one, sizeof(one));
    (void)rc; /* EAGAIN means it is already signalled */
}

static void deliver_batch(struct worker *w, struct delivery_batch *b)
{
    for (size_t i = 0; i < b->count; i++) {
        struct session *s = b->items[i].session;
        atomic_fetch_sub_explicit(&s->incoming, 1, memory_order_relaxed);
        session_deliver(w, s, &b->items[i].d);
        session_unref(s);
    }
    free(b);
}

/* Direct hand-over: when the target worker sleeps in epoll_wait (its loop
 * lock is free) and nothing waits in its inbox, deliver the batch and write
 * its sockets here, in its place. It saves a thread wake-up per batch, which
 * is most of the latency of a cross-worker delivery at light load; a busy
 * target holds its lock and gets the batch through its inbox. Taking the
 * lock with trylock only means no worker ever waits for another. An empty
 * inbox keeps per-publisher order: this worker's earlier batches, if any,
 * are still there. */
static bool deliver_direct(struct worker *w, struct worker *t, struct delivery_batch *b)
{
    if (pthread_mutex_trylock(&t->loop_lock) != 0)
        return false;
    pthread_mutex_lock(&t->inbox.lock);
    bool empty = !t->inbox.batches && !t->inbox.conns;
    pthread_mutex_unlock(&t->inbox.lock);
    if (!empty || atomic_load(&w->broker->stopping)) {
        pthread_mutex_unlock(&t->loop_lock);
        return false;
    }
    if (w->now > t->now)
        t->now = w->now;
    deliver_batch(t, b);
    persist_commit(t, false);
    flush_dirty(t);
    bool pumps = t->pumps != NULL;
    pthread_mutex_unlock(&t->loop_lock);
    if (pumps)
        inbox_signal(t); /* its loop runs them */
    return true;
}

static void flush_outbox(struct worker *w)
{
    for (int i = 0; i < w->broker->worker_count; i++) {
        struct delivery_batch *b = w->outbox[i];
        if (!b)
            continue;
        w->outbox[i] = NULL;
        struct worker *t = w->broker->workers[i];
        if (deliver_direct(w, t, b))
            continue;
        pthread_mutex_lock(&t->inbox.lock);
        b->next = NULL;
        if (t->inbox.batches_last)
            t->inbox.batches_last->next = b;
        else
            t->inbox.batches = b;
        t->inbox.batches_last = b;
        bool signal = !t->inbox.signalled;
        t->inbox.signalled = true;
        pthread_mutex_unlock(&t->inbox.lock);
        if (signal)
            inbox_signal(t);
    }
}

size_t worker_route(struct worker *w, struct message *m)
{
    return worker_route_from(w, m, NULL);
}

size_t worker_route_from(struct worker *w, struct message *m, struct session **backed_up)
{
    struct route_query q = {
        .topic = (const uint8_t *)m->topic,
        .topic_len = m->topic_len,
        .origin = m->origin,
        .sub_id_of = session_router_id,
        .origin_hash = m->origin_hash,
        .rng = &w->rng,
    };
    size_t n;
    for (;;) {
        n = router_match(w->broker->router, &q, w->routes, w->routes_cap);
        if (n <= w->routes_cap)
            break;
        size_t cap = w->routes_cap;
        while (cap < n)
            cap *= 2;
        struct route *r = realloc(w->routes, cap * sizeof(*r));
        if (!r) {
            /* Routes that did not fit carry no references: deliver none. */
            log_error("out of memory routing a message on %s: dropped", m->topic);
            STAT_ADD(&w->stats, msgs_dropped, 1);
            return 0;
        }
        w->routes = r;
        w->routes_cap = cap;
    }
    bool upgrade = w->broker->conf->upgrade_outgoing_qos;
    /* Pacing: is every destination backed up? */
    struct session *slow = NULL;
    if (backed_up && n > 0) {
        /* Offline and stalled sessions take no part: they queue up to
         * their limit whatever the publisher does. */
        uint32_t threshold = session_backlog_threshold(w);
        bool all = true;
        for (size_t i = 0; i < n && all; i++) {
            struct session *s = w->routes[i].sub;
            if (!atomic_load_explicit(&s->online, memory_order_relaxed) ||
                atomic_load_explicit(&s->stalled, memory_order_relaxed))
                continue;
            if (session_backed_up(s, threshold))
                slow = s;
            else
                all = false;
        }
        if (all && slow)
            session_ref(slow);
        else
            slow = NULL;
    }
    if (backed_up)
        *backed_up = slow;
    for (size_t i = 0; i < n; i++) {
        const struct route *r = &w->routes[i];
        struct delivery d = {.msg = message_ref(m), .group = r->group};
        d.qos = upgrade ? r->opts.qos : (m->qos < r->opts.qos ? m->qos : r->opts.qos);
        if (r->opts.retain_as_published && m->retain)
            d.flags = DELIVERY_RETAIN;
        d.sub_id_count = (uint8_t)(r->sub_id_count < DELIVERY_MAX_SUB_IDS
                                       ? r->sub_id_count : DELIVERY_MAX_SUB_IDS);
        memcpy(d.sub_ids, r->sub_ids, d.sub_id_count * sizeof(uint32_t));
        if (d.qos)
            persist_delivery_new(w, r->sub, &d);
        worker_deliver(w, r->sub, &d);
    }
    return n;
}

/* ---- delayed publish (a binary min-heap by due time) -------------------- */

/* Equal due times keep their order of arrival. */
static bool delayed_before(const struct delayed_msg *a, const struct delayed_msg *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static int delayed_push(struct worker *w, struct delayed_msg *item)
{
    if (w->delayed_count == w->delayed_cap) {
        size_t cap = w->delayed_cap ? w->delayed_cap * 2 : 16;
        struct delayed_msg *a = realloc(w->delayed, cap * sizeof(*a));
        if (!a)
            return -1;
        w->delayed = a;
        w->delayed_cap = cap;
    }
    item->seq = w->delayed_seq++;
    size_t i = w->delayed_count++;
    while (i > 0 && delayed_before(item, &w->delayed[(i - 1) / 2])) {
        w->delayed[i] = w->delayed[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->delayed[i] = *item;
    return 0;
}

void worker_delay(struct worker *w, struct message *m, uint64_t due)
{
    struct delayed_msg item = {.due = due, .msg = m};
    persist_delayed(w, &item); /* sets its store key */
    if (delayed_push(w, &item) < 0) {
        persist_delayed_done(w, &item);
        message_unref(m);
    }
}

void worker_delay_restore(struct worker *w, struct delayed_msg *item)
{
    if (delayed_push(w, item) < 0)
        message_unref(item->msg);
}

static void run_delayed(struct worker *w)
{
    while (w->delayed_count && w->delayed[0].due <= w->now) {
        struct delayed_msg due = w->delayed[0];
        struct message *m = due.msg;
        struct delayed_msg last = w->delayed[--w->delayed_count];
        size_t i = 0;
        for (;;) {
            size_t c = 2 * i + 1;
            if (c >= w->delayed_count)
                break;
            if (c + 1 < w->delayed_count && delayed_before(&w->delayed[c + 1], &w->delayed[c]))
                c++;
            if (!delayed_before(&w->delayed[c], &last))
                break;
            w->delayed[i] = w->delayed[c];
            i = c;
        }
        if (w->delayed_count)
            w->delayed[i] = last;
        /* Forgotten in the batch that stores what routing it causes. */
        persist_delayed_done(w, &due);
        if (m->retain && w->broker->conf->retain_available)
            persist_retain(w, m);
        worker_route(w, m);
        message_unref(m);
    }
}

/* ---- input -------------------------------------------------------------- */

static void conn_adopt(struct worker *w, struct conn *c)
{
    c->worker = w;
    c->next = w->conns;
    c->prev = NULL;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->conn_count++;
    c->want_write = false;
    c->read_paused = false;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        log_error("client %s: epoll: %s", c->peer, strerror(errno));
        conn_close(c, false);
    }
}

/* Move a connection that has sent CONNECT to the worker owning its session.
 * The unconsumed input (starting with the CONNECT) travels in c->in. */
static void conn_move(struct worker *w, struct conn *c, int target)
{
    conn_unlink(w, c);
    struct worker *t = w->broker->workers[target];
    pthread_mutex_lock(&t->inbox.lock);
    c->next = t->inbox.conns;
    t->inbox.conns = c;
    bool signal = !t->inbox.signalled;
    t->inbox.signalled = true;
    pthread_mutex_unlock(&t->inbox.lock);
    if (signal)
        inbox_signal(t);
}

/* Handle every whole packet in data[0..len). Returns bytes consumed; sets
 * *move to a worker id when the connection must move (-1 otherwise). */
static size_t process(struct worker *w, struct conn *c, const uint8_t *data, size_t len, int *move)
{
    const struct config *cf = w->broker->conf;
    struct mqtt_decoder_opts opts = {
        .role = MQTT_ROLE_SERVER,
        .version = c->version,
        .max_packet_size = cf->max_packet_size,
    };
    size_t off = 0;
    *move = -1;
    while (off < len && c->state != CONN_CLOSING) {
        struct mqtt_packet p;
        size_t used = 0;
        uint8_t reason = 0;
        opts.version = c->version;
        enum mqtt_decode_status st = mqtt_decode(data + off, len - off, &opts, &p, &used, &reason);
        if (st == MQTT_DECODE_MORE)
            break;
        if (st == MQTT_DECODE_ERROR) {
            protocol_reject(w, c, reason);
            break;
        }
        STAT_ADD(&w->stats, packets_received, 1);
        c->last_rx = w->now;
        int target = -1;
        enum protocol_result r = protocol_handle(w, c, &p, &target);
        if (r == PROTOCOL_MOVE) {
            *move = target;
            break; /* the CONNECT stays unconsumed */
        }
        off += used;
        if (r == PROTOCOL_STOP || c->paced)
            break; /* a paced publisher's remaining input waits in c->in */
    }
    return off;
}

static void conn_readable(struct worker *w, struct conn *c)
{
    if (c->state == CONN_CLOSING) {
        /* Still writing its last output. Input is discarded (left unread,
         * level-triggered EPOLLIN would fire again at once); end of file or
         * an error means the output will never be read. */
        ssize_t n = recv(c->fd, w->rbuf, w->rbuf_cap, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            conn_abandon(c);
        return;
    }
    if (c->paced) {
        /* Reading is off; only a hang-up or an error gets here. */
        conn_close(c, true);
        return;
    }
    bool own = buf_used(&c->in) > 0;
    uint8_t *dst;
    size_t room;
    if (own) {
        dst = buf_reserve(&c->in, 16384);
        if (!dst) {
            conn_close(c, true);
            return;
        }
        room = c->in.cap - c->in.len;
    } else {
        dst = w->rbuf;
        room = w->rbuf_cap;
    }
    ssize_t n = recv(c->fd, dst, room, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (c->state == CONN_ACTIVE)
            log_info("client %s disconnected unexpectedly%s%s", c->client_id ? c->client_id : c->peer,
                     n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
        conn_close(c, true);
        return;
    }
    STAT_ADD(&w->stats, bytes_received, (uint64_t)n);
    if (own)
        c->buffers_used = true;
    const uint8_t *data;
    size_t len;
    if (own) {
        buf_commit(&c->in, (size_t)n);
        data = c->in.data + c->in.off;
        len = buf_used(&c->in);
    } else {
        data = w->rbuf;
        len = (size_t)n;
    }
    int move;
    size_t used = process(w, c, data, len, &move);
    if (c->state == CONN_CLOSING) {
        if (own)
            buf_consume(&c->in, buf_used(&c->in));
        return;
    }
    if (own) {
        buf_consume(&c->in, used);
    } else if (used < len && buf_append(&c->in, data + used, len - used) < 0) {
        conn_close(c, true);
        return;
    }
    if (move >= 0)
        conn_move(w, c, move);
}

/* ---- publisher pacing ----------------------------------------------------
 *
 * A publisher whose messages all land behind a backlog (every online
 * subscriber it reaches already has more than the backlog threshold queued,
 * or more than SESSION_OUT_PACE bytes of unsent output, which is where QoS 0
 * waits) stops being read until that backlog is half worked off. Without
 * this, a fan-in of fast publishers to one subscriber fills the
 * subscriber's queue to its limit and the rest is dropped (QoS 0 at the
 * output limit); with it, the publishers go at the subscriber's pace, as
 * over one TCP connection, and nothing is lost. A publisher
 * that also reaches a subscriber keeping up is never paced, so one slow
 * subscriber does not slow the others (it hits its own queue limit), and
 * a subscriber whose backlog stops moving is marked stalled and paces no
 * one (session.c). Resumption is checked every loop iteration, which
 * sleeps at most 1 ms while any publisher is paced. */

void conn_pace(struct conn *c, struct session *on)
{
    struct worker *w = c->worker;
    if (c->paced || c->state != CONN_ACTIVE) {
        session_unref(on);
        return;
    }
    c->paced = true;
    c->pace_on = on;
    c->paced_next = w->paced;
    w->paced = c;
    set_events(w, c, c->want_write, c->read_paused);
}

/* Handle what a connection has buffered (after a move or a pause). */
static void process_buffered(struct worker *w, struct conn *c)
{
    if (c->state == CONN_CLOSING || !buf_used(&c->in))
        return;
    int move;
    size_t used = process(w, c, c->in.data + c->in.off, buf_used(&c->in), &move);
    if (c->state != CONN_CLOSING) {
        buf_consume(&c->in, used);
        if (move >= 0) /* cannot happen: the connection is on its owner */
            conn_close(c, false);
    }
}

static void resume_paced(struct worker *w)
{
    uint32_t resume_at = session_backlog_threshold(w) / 2;
    struct conn *ready = NULL;
    for (struct conn **pp = &w->paced; *pp;) {
        struct conn *c = *pp;
        struct session *s = c->pace_on;
        if (session_backed_up(s, resume_at) &&
            atomic_load_explicit(&s->online, memory_order_relaxed) &&
            !atomic_load_explicit(&s->stalled, memory_order_relaxed)) {
            pp = &c->paced_next;
            continue;
        }
        *pp = c->paced_next;
        c->paced = false;
        session_unref(s);
        c->pace_on = NULL;
        c->paced_next = ready;
        ready = c;
    }
    while (ready) {
        struct conn *c = ready;
        ready = c->paced_next;
        c->paced_next = NULL;
        set_events(w, c, c->want_write, buf_used(&c->out) > OUT_PAUSE_READ);
        process_buffered(w, c);
    }
}

/* Connections handed over by another worker: their CONNECT is in c->in. */
static void adopt_moved(struct worker *w, struct conn *c)
{
    conn_adopt(w, c);
    process_buffered(w, c);
}

static void drain_inbox(struct worker *w)
{
    uint64_t v;
    ssize_t rc = read(w->wakefd, &v, sizeof(v));
    (void)rc;
    pthread_mutex_lock(&w->inbox.lock);
    struct delivery_batch *batches = w->inbox.batches;
    struct conn *conns = w->inbox.conns;
    w->inbox.batches = NULL;
    w->inbox.batches_last = NULL;
    w->inbox.conns = NULL;
    w->inbox.signalled = false;
    pthread_mutex_unlock(&w->inbox.lock);
    while (batches) {
        struct delivery_batch *b = batches;
        batches = b->next;
        deliver_batch(w, b);
    }
    while (conns) {
        struct conn *c = conns;
        conns = c->next;
        adopt_moved(w, c);
    }
}

static void format_peer(const struct sockaddr_storage *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(out, cap, "%s:%d", host, ntohs(s4->sin_port));
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(out, cap, "[%s]:%d", host, ntohs(s6->sin6_port));
    } else {
        snprintf(out, cap, "unix");
    }
}

static void accept_ready(struct worker *w, struct listener *l)
{
    const struct config *cf = w->broker->conf;
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        struct sockaddr_storage sa;
        socklen_t salen = sizeof(sa);
        int fd = accept4(l->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                log_warning("accept on %s: %s", l->name, strerror(errno));
            return; /* EAGAIN: another worker took it, or none left */
        }
        char peer[64];
        format_peer(&sa, peer, sizeof(peer));
        int total = atomic_fetch_add(&w->broker->connections, 1) + 1;
        int here = atomic_fetch_add(&l->connections, 1) + 1;
        if ((cf->max_connections >= 0 && total > cf->max_connections) ||
            (l->conf->max_connections >= 0 && here > l->conf->max_connections)) {
            log_notice("connection from %s on %s refused: max_connections reached", peer, l->name);
            atomic_fetch_sub(&w->broker->connections, 1);
            atomic_fetch_sub(&l->connections, 1);
            close(fd);
            continue;
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            atomic_fetch_sub(&w->broker->connections, 1);
            atomic_fetch_sub(&l->connections, 1);
            close(fd);
            continue;
        }
        if (cf->set_tcp_nodelay && sa.ss_family != AF_UNIX) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        c->ev_kind = EV_CONN;
        c->fd = fd;
        c->listener = l;
        c->mount = l->conf->mount_point;
        c->mount_len = (uint16_t)(c->mount ? strlen(c->mount) : 0);
        c->state = CONN_NEW;
        c->last_rx = w->now;
        c->deadline = w->now + CONNECT_TIMEOUT_MS;
        memcpy(c->peer, peer, sizeof(c->peer));
        STAT_ADD(&w->stats, connections_accepted, 1);
        log_debug("new connection from %s on %s", peer, l->name);
        conn_adopt(w, c);
    }
}

/* ---- timers ------------------------------------------------------------ */

static void tick(struct worker *w)
{
    for (struct conn *c = w->conns; c; c = c->next) {
        /* Buffers of a connection quiet for a whole tick go back. */
        if (!c->buffers_used) {
            buf_trim(&c->out);
            buf_trim(&c->in);
        }
        c->buffers_used = false;
        if (c->state == CONN_NEW && w->now >= c->deadline) {
            log_notice("client %s sent no CONNECT in time, closing", c->peer);
            conn_close(c, false);
        } else if (c->state == CONN_ACTIVE && c->keepalive &&
                   w->now - c->last_rx > (uint64_t)c->keepalive * 1500u) {
            protocol_keepalive_timeout(w, c);
        } else if (c->state == CONN_CLOSING && w->now >= c->deadline) {
            log_notice("client %s did not read its last output in time, closing",
                       c->client_id ? c->client_id : c->peer);
            conn_abandon(c);
        }
    }
    session_tick(w, w->now);
    if (w->id == 0 && w->broker->conf->sys_interval > 0 && w->now >= w->next_sys) {
        sys_publish(w);
        w->next_sys = w->now + (uint64_t)w->broker->conf->sys_interval * 1000u;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    router_set_thread_slot(w->id);
    struct epoll_event events[MAX_EVENTS];
    w->now = clock_mono_ms();
    w->next_tick = w->now + TICK_MS;
    w->next_sys = w->now;
    pthread_mutex_lock(&w->loop_lock);
    while (!atomic_load(&w->broker->stopping)) {
        int timeout = (int)(w->next_tick > w->now ? w->next_tick - w->now : 0);
        if (w->delayed_count && w->delayed[0].due < w->next_tick)
            timeout = (int)(w->delayed[0].due > w->now ? w->delayed[0].due - w->now : 0);
        if (w->paced && timeout > 1)
            timeout = 1;
        if (w->pumps)
            timeout = 0;
        pthread_mutex_unlock(&w->loop_lock);
        int n = epoll_wait(w->epfd, events, MAX_EVENTS, timeout);
        pthread_mutex_lock(&w->loop_lock);
        w->now = clock_mono_ms();
        for (int i = 0; i < n; i++) {
            int kind = *(int *)events[i].data.ptr;
            if (kind == EV_CONN) {
                struct conn *c = events[i].data.ptr;
                if (events[i].events & EPOLLOUT) {
                    if (conn_flush(w, c) < 0)
                        conn_close(c, true);
                    /* The flush pass destroys a closing connection once its
                     * output is out (or the socket failed). */
                    if (c->state == CONN_CLOSING)
                        mark_dirty(c);
                }
                if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                    conn_readable(w, c);
            } else if (kind == EV_LISTENER) {
                accept_ready(w, events[i].data.ptr);
            } else {
                drain_inbox(w);
            }
        }
        session_run_pumps(w);
        if (w->paced)
            resume_paced(w);
        if (w->delayed_count)
            run_delayed(w);
        if (w->now >= w->next_tick) {
            tick(w);
            w->next_tick = w->now + TICK_MS;
        }
        /* What this iteration changed is stored before anything it
         * acknowledged leaves (durability sync; periodic: every interval). */
        persist_commit(w, false);
        flush_outbox(w);
        flush_dirty(w);
    }
    /* Shutdown: tell MQTT 5 clients, flush, close. */
    for (struct conn *c = w->conns; c; c = c->next)
        protocol_shutdown(w, c);
    flush_outbox(w);
    flush_dirty(w);
    while (w->conns) {
        struct conn *c = w->conns;
        c->state = CONN_CLOSING;
        c->will_on_close = false;
        conn_destroy(w, c);
    }
    session_run_pumps(w); /* all offline now: only drops the references */
    persist_commit(w, true);
    pthread_mutex_unlock(&w->loop_lock);
    return NULL;
}

int worker_start(struct worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

void worker_join(struct worker *w)
{
    pthread_join(w->thread, NULL);
}

void worker_wake(struct worker *w)
{
    inbox_signal(w);
}

static void batch_free(struct delivery_batch *b)
{
    for (size_t i = 0; i < b->count; i++) {
        message_unref(b->items[i].d.msg);
        session_unref(b->items[i].session);
    }
    free(b);
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    /* Deliveries still in the inbox or outbox (shutdown). */
    while (w->inbox.batches) {
        struct delivery_batch *b = w->inbox.batches;
        w->inbox.batches = b->next;
        batch_free(b);
    }
    while (w->inbox.conns) {
        struct conn *c = w->inbox.conns;
        w->inbox.conns = c->next;
        close(c->fd);
        buf_free(&c->in);
        buf_free(&c->out);
        free(c->client_id);
        acl_rules_free(c->acl);
        free(c);
    }
    for (size_t i = 0; i < w->delayed_count; i++)
        message_unref(w->delayed[i].msg);
    free(w->delayed);
    if (w->outbox) {
        for (int i = 0; i < w->broker->worker_count; i++)
            if (w->outbox[i])
                batch_free(w->outbox[i]);
        free(w->outbox);
    }
    session_table_free(&w->sessions);
    store_batch_free(w->batch);
    pthread_mutex_destroy(&w->inbox.lock);
    pthread_mutex_destroy(&w->loop_lock);
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->wakefd >= 0)
        close(w->wakefd);
    free(w->rbuf);
    free(w->routes);
    free(w);
}
