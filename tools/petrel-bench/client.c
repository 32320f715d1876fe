/* client.c - petrel-bench worker threads: MQTT client connections driven by
 * one epoll loop per thread.
 *
 * Each worker owns a set of connections (non-blocking sockets). Per loop
 * iteration it starts new connection attempts (rate limited), lets the
 * publishers generate the messages that are due, writes each connection's
 * accumulated output with one send(), then waits for events and handles
 * each readable socket with one read of up to 64 KiB, decoding every
 * complete packet in it. Packets are built and parsed with the petrel codec.
 */
#include "bench.h"

#include <errno.h>
#include <stdarg.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mqtt/codec.h"

#define READ_CHUNK 65536u
#define OUT_HIGH 65536u        /* QoS 0 publishers pause above this backlog */
#define MAX_PENDING 256u       /* handshakes in progress per worker */
#define BURST 64u              /* messages per publisher per iteration */
#define PUB_BUDGET 1024u       /* messages per worker per iteration: keeps the
                                  loop short so that acks and deliveries are
                                  not held up behind publishing */
#define SUB_READS 8u           /* reads per readable subscriber per iteration */
#define HANDSHAKE_TIMEOUT_NS (30ull * 1000000000ull)

_Atomic int g_phase;
_Atomic uint64_t g_run_start;
_Atomic uint64_t g_win_start;
_Atomic uint64_t g_win_end;

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* Keep the first error of a worker for the report. */
static void werr(struct worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void werr(struct worker *w, const char *fmt, ...)
{
    if (w->errmsg[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->errmsg, sizeof w->errmsg, fmt, ap);
    va_end(ap);
}

/* ---- epoll and output ---------------------------------------------------- */

static void set_events(struct conn *c, uint32_t ev)
{
    if (c->ev == ev || c->fd < 0)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &e);
    c->ev = ev;
}

static uint32_t wanted_events(const struct conn *c)
{
    if (c->state == CS_TCP)
        return EPOLLOUT;
    uint32_t ev = c->w->stalled && c->role == ROLE_SUB ? 0 : EPOLLIN;
    return ev | (c->want_out ? EPOLLOUT : 0);
}

static bool out_reserve(struct conn *c, size_t n)
{
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + n <= c->out_cap)
        return true;
    if (c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + n <= c->out_cap)
            return true;
    }
    size_t cap = c->out_cap ? c->out_cap : 512;
    while (cap < c->out_len + n)
        cap *= 2;
    uint8_t *p = realloc(c->out, cap);
    if (!p)
        return false;
    c->out = p;
    c->out_cap = cap;
    return true;
}

static void mark_dirty(struct conn *c)
{
    if (!c->in_dirty) {
        c->in_dirty = true;
        c->w->dirty[c->w->ndirty++] = c;
    }
}

static void conn_close(struct conn *c, bool failed)
{
    struct worker *w = c->w;
    if (c->fd < 0)
        return;
    close(c->fd);
    c->fd = -1;
    if (c->state == CS_READY) {
        if (atomic_load_explicit(&g_phase, memory_order_relaxed) < PH_QUIT)
            st_add(&w->st.closed, 1);
    } else if (c->state != CS_CLOSED && c->state != CS_NEW) {
        w->pending--;
        if (failed)
            st_add(&w->st.conn_fail, 1);
    }
    if (c->role == ROLE_PUB) {
        if (c->inflight)
            atomic_store_explicit(&w->st.inflight, ld(&w->st.inflight) - c->inflight,
                                  memory_order_relaxed);
        c->inflight = 0;
        if (!c->pub_done) {
            c->pub_done = true;
            st_add(&w->st.pubs_done, 1);
        }
    }
    c->state = CS_CLOSED;
    c->out_len = c->out_off = 0;
    c->in_len = 0;
}

/* One send() of everything accumulated; the rest waits for EPOLLOUT. */
static void flush(struct conn *c)
{
    c->in_dirty = false;
    if (c->fd < 0 || c->state == CS_TCP)
        return;
    size_t n = c->out_len - c->out_off;
    if (n) {
        ssize_t r = send(c->fd, c->out + c->out_off, n, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                werr(c->w, "send: %s", strerror(errno));
                conn_close(c, true);
                return;
            }
            r = 0;
        }
        c->out_off += (size_t)r;
        if (c->out_off == c->out_len)
            c->out_off = c->out_len = 0;
    }
    c->want_out = c->out_len > c->out_off;
    set_events(c, wanted_events(c));
}

static bool send_packet(struct conn *c, const struct mqtt_packet *p)
{
    uint8_t ver = c->w->cfg->version;
    size_t n = mqtt_encoded_len(p, ver);
    if (!n || !out_reserve(c, n))
        return false;
    mqtt_encode(p, ver, c->out + c->out_len, n);
    c->out_len += n;
    mark_dirty(c);
    return true;
}

static void send_ack(struct conn *c, uint8_t type, uint16_t pid)
{
    struct mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = type;
    p.u.ack.packet_id = pid;
    send_packet(c, &p);
}

/* ---- connection setup ---------------------------------------------------- */

static void send_connect(struct conn *c)
{
    const struct bench_cfg *cfg = c->w->cfg;
    char cid[64];
    static const char roles[] = "psc";
    int n = cfg->id_prefix
                ? snprintf(cid, sizeof cid, "%.40s-%c%u", cfg->id_prefix, roles[c->role], c->idx)
                : snprintf(cid, sizeof cid, "pb%d-%c%u", (int)getpid(), roles[c->role], c->idx);
    struct mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = MQTT_CONNECT;
    p.u.connect.version = cfg->version;
    p.u.connect.clean_start = cfg->clean;
    p.u.connect.keepalive = cfg->keepalive;
    p.u.connect.client_id.ptr = (const uint8_t *)cid;
    p.u.connect.client_id.len = (uint32_t)n;
    if (cfg->version == MQTT_V5 && cfg->session_expiry >= 0) {
        p.u.connect.props.session_expiry = (uint32_t)cfg->session_expiry;
        mqtt_props_set(&p.u.connect.props, MQTT_PROP_SESSION_EXPIRY);
    }
    send_packet(c, &p);
    c->state = CS_CONNACK;
}

static void send_subscribe(struct conn *c)
{
    uint8_t list[1024];
    struct mqtt_sub_opts o = {.qos = c->w->cfg->qos};
    size_t len = mqtt_sub_list_append(list, sizeof list, 0, c->sub_filter,
                                      strlen(c->sub_filter), &o, true);
    struct mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = MQTT_SUBSCRIBE;
    p.u.subscribe.packet_id = 1;
    p.u.subscribe.count = 1;
    p.u.subscribe.list.ptr = list;
    p.u.subscribe.list.len = (uint32_t)len;
    if (!len || !send_packet(c, &p)) {
        werr(c->w, "subscribe: cannot encode filter %s", c->sub_filter);
        conn_close(c, true);
        return;
    }
    c->state = CS_SUBACK;
}

static void conn_ready(struct conn *c, uint64_t now)
{
    struct worker *w = c->w;
    c->state = CS_READY;
    w->pending--;
    st_add(&w->st.conn_ok, 1);
    st_add(&w->st.ready, 1);
    hist_add(&w->conn_lat, now - c->t_connect);
}

static void conn_start(struct worker *w, struct conn *c, uint64_t now)
{
    const struct bench_cfg *cfg = w->cfg;
    c->t_connect = now;
    c->last_tx = now;
    w->pending++;
    c->state = CS_TCP;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        werr(w, "socket: %s", strerror(errno));
        c->fd = -1;
        w->pending--;
        c->state = CS_CLOSED;
        st_add(&w->st.conn_fail, 1);
        return;
    }
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (cfg->ifaddrs > 1) {
#ifdef IP_BIND_ADDRESS_NO_PORT
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
        struct sockaddr_in src;
        memset(&src, 0, sizeof src);
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000001u + c->idx % cfg->ifaddrs +
                                    (c->role == ROLE_PUB ? cfg->subs : 0) % cfg->ifaddrs);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            werr(w, "bind source address: %s", strerror(errno));
            conn_close(c, true);
            return;
        }
    }
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    c->ev = EPOLLOUT;
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &e) < 0) {
        werr(w, "epoll_ctl: %s", strerror(errno));
        conn_close(c, true);
        return;
    }
    int r = connect(fd, (const struct sockaddr *)&cfg->addr, sizeof cfg->addr);
    if (r < 0 && errno != EINPROGRESS) {
        werr(w, "connect: %s", strerror(errno));
        conn_close(c, true);
    }
}

static void on_connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        werr(c->w, "connect: %s", strerror(err));
        conn_close(c, true);
        return;
    }
    send_connect(c);
    set_events(c, wanted_events(c));
}

/* ---- publishing ------------------------------------------------------- */

static uint16_t take_pid(struct conn *c)
{
    for (;;) {
        uint16_t pid = ++c->next_pid;
        if (!pid)
            continue;
        uint64_t m = (uint64_t)1 << (pid & 63);
        if (!(c->pid_used[pid >> 6] & m)) {
            c->pid_used[pid >> 6] |= m;
            return pid;
        }
    }
}

static bool release_pid(struct conn *c, uint16_t pid)
{
    if (!c->pid_used)
        return false;
    uint64_t m = (uint64_t)1 << (pid & 63);
    if (!(c->pid_used[pid >> 6] & m))
        return false;
    c->pid_used[pid >> 6] &= ~m;
    c->inflight--;
    atomic_store_explicit(&c->w->st.inflight, ld(&c->w->st.inflight) - 1,
                          memory_order_relaxed);
    return true;
}

static bool publish_one(struct worker *w, struct conn *c, uint64_t now)
{
    const struct bench_cfg *cfg = w->cfg;
    struct mqtt_publish p;
    memset(&p, 0, sizeof p);
    p.qos = cfg->qos;
    p.topic.ptr = (const uint8_t *)c->topic;
    p.topic.len = c->topic_len;
    p.payload.len = cfg->size;
    if (!out_reserve(c, (size_t)c->topic_len + 16 + cfg->size))
        return false;
    if (p.qos)
        p.packet_id = take_pid(c);
    uint8_t *o = c->out + c->out_len;
    size_t h = mqtt_encode_publish_header(&p, cfg->version, o, c->out_cap - c->out_len);
    if (!h)
        return false;
    memcpy(o + h, w->payload, cfg->size);
    put32(o + h, c->idx);
    put32(o + h + 4, c->seq);
    put64(o + h + 8, now);
    c->out_len += h + cfg->size;
    c->seq++;
    c->last_tx = now;
    mark_dirty(c);
    if (p.qos) {
        c->inflight++;
        st_add(&w->st.inflight, 1);
    }
    st_add(&w->st.sent, 1);
    if (now >= ld(&g_win_start) && now <= ld(&g_win_end))
        st_add(&w->st.sent_win, 1);
    return true;
}

static void pub_finish(struct worker *w, struct conn *c)
{
    if (!c->pub_done) {
        c->pub_done = true;
        st_add(&w->st.pubs_done, 1);
    }
}

/* Send what is due; returns the time the publisher wants to run again
 * (0: as soon as possible, UINT64_MAX: when an event arrives). */
static uint64_t pub_pump(struct worker *w, struct conn *c, uint64_t now, unsigned *budget)
{
    const struct bench_cfg *cfg = w->cfg;
    if (c->state != CS_READY || c->pub_done)
        return UINT64_MAX;
    uint64_t interval = cfg->rate > 0 ? (uint64_t)(1e9 / cfg->rate) : 0;
    for (unsigned burst = 0;; burst++) {
        if (cfg->count && c->seq >= cfg->count) {
            pub_finish(w, c);
            return UINT64_MAX;
        }
        if (cfg->qos ? c->inflight >= c->max_inflight
                     : c->out_len - c->out_off >= OUT_HIGH)
            return UINT64_MAX;
        if (interval) {
            if (c->next_due > now)
                return c->next_due;
            c->next_due += interval;
            if (now > c->next_due + 1000000000ull)
                c->next_due = now; /* far behind: do not burst to catch up */
        }
        if (burst >= BURST || !*budget)
            return 0;
        if (!publish_one(w, c, now)) {
            werr(w, "publish: cannot encode");
            conn_close(c, true);
            return UINT64_MAX;
        }
        (*budget)--;
    }
}

/* ---- receiving ---------------------------------------------------------- */

static void on_publish(struct worker *w, struct conn *c, const struct mqtt_publish *p,
                       uint64_t now)
{
    if (p->qos == 1)
        send_ack(c, MQTT_PUBACK, p->packet_id);
    else if (p->qos == 2)
        send_ack(c, MQTT_PUBREC, p->packet_id);
    if (p->payload.len < PAYLOAD_MIN || !c->trk) {
        st_add(&w->st.stray, 1);
        return;
    }
    const uint8_t *b = p->payload.ptr;
    uint32_t id = get32(b), seq = get32(b + 4);
    uint64_t ts = get64(b + 8);
    struct trkset *ts_set = c->trk;
    /* A message stamped before this run started (or in the future) comes
     * from another run on the same topics, e.g. still queued in the broker. */
    if (id < ts_set->lo || id - ts_set->lo >= ts_set->n || ts < ld(&g_run_start) ||
        ts > now) {
        st_add(&w->st.stray, 1);
        return;
    }
    struct seqtrk *t = &ts_set->t[id - ts_set->lo];
    int r;
    if (ts_set->locked) {
        while (atomic_flag_test_and_set_explicit(&ts_set->lock, memory_order_acquire))
            ;
        r = seqtrk_add(t, seq);
        atomic_flag_clear_explicit(&ts_set->lock, memory_order_release);
    } else {
        r = seqtrk_add(t, seq);
    }
    st_add(&w->st.recv, 1);
    if (r != SEQ_DUP)
        st_add(&w->st.uniq, 1);
    if (ts >= ld(&g_win_start) && now >= ts)
        hist_add(&w->lat, now - ts);
    if (now >= ld(&g_win_start) && now <= ld(&g_win_end))
        st_add(&w->st.recv_win, 1);
    atomic_store_explicit(&w->st.last_recv_ns, now, memory_order_relaxed);
}

static void on_packet(struct worker *w, struct conn *c, const struct mqtt_packet *p,
                      uint64_t now)
{
    switch (p->type) {
    case MQTT_CONNACK:
        if (c->state != CS_CONNACK || p->u.connack.code != 0) {
            werr(w, "CONNACK refused or unexpected (code %u)", p->u.connack.code);
            conn_close(c, true);
            return;
        }
        if (c->role == ROLE_PUB && mqtt_props_has(&p->u.connack.props, MQTT_PROP_RECEIVE_MAX) &&
            p->u.connack.props.receive_max < c->max_inflight)
            c->max_inflight = p->u.connack.props.receive_max;
        if (c->role == ROLE_SUB)
            send_subscribe(c);
        else
            conn_ready(c, now);
        return;
    case MQTT_SUBACK:
        if (c->state != CS_SUBACK || p->u.suback.count < 1 || p->u.suback.codes[0] >= 0x80) {
            werr(w, "SUBACK refused or unexpected (code 0x%02x)",
                 p->u.suback.count ? p->u.suback.codes[0] : 0);
            conn_close(c, true);
            return;
        }
        conn_ready(c, now);
        return;
    case MQTT_PUBLISH:
        on_publish(w, c, &p->u.publish, now);
        return;
    case MQTT_PUBACK:
        if (!release_pid(c, p->u.ack.packet_id)) {
            st_add(&w->st.proto_errors, 1);
            return;
        }
        st_add(&w->st.acked, 1);
        if (p->u.ack.reason >= 0x80)
            st_add(&w->st.pub_errors, 1);
        return;
    case MQTT_PUBREC:
        if (p->u.ack.reason >= 0x80) {
            if (release_pid(c, p->u.ack.packet_id))
                st_add(&w->st.pub_errors, 1);
            else
                st_add(&w->st.proto_errors, 1);
            return;
        }
        send_ack(c, MQTT_PUBREL, p->u.ack.packet_id);
        return;
    case MQTT_PUBCOMP:
        if (!release_pid(c, p->u.ack.packet_id)) {
            st_add(&w->st.proto_errors, 1);
            return;
        }
        st_add(&w->st.acked, 1);
        return;
    case MQTT_PUBREL:
        send_ack(c, MQTT_PUBCOMP, p->u.ack.packet_id);
        return;
    case MQTT_PINGRESP:
        return;
    case MQTT_DISCONNECT:
        werr(w, "broker sent DISCONNECT (reason 0x%02x)", p->u.disconnect.reason);
        conn_close(c, c->state != CS_READY);
        return;
    default:
        st_add(&w->st.proto_errors, 1);
        return;
    }
}

/* One read of up to 64 KiB; every complete packet in it is handled.
 * Returns true if the read filled the whole chunk (more may be waiting). */
static bool read_once(struct worker *w, struct conn *c)
{
    size_t have = c->in_len;
    if (have + READ_CHUNK > w->rbuf_cap) {
        size_t cap = have + READ_CHUNK;
        uint8_t *nb = realloc(w->rbuf, cap);
        if (!nb) {
            conn_close(c, true);
            return false;
        }
        w->rbuf = nb;
        w->rbuf_cap = cap;
    }
    if (have)
        memcpy(w->rbuf, c->in, have);
    ssize_t r = recv(c->fd, w->rbuf + have, READ_CHUNK, 0);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return false;
        if (c->state != CS_READY || atomic_load(&g_phase) < PH_QUIT)
            werr(w, "connection closed by broker%s%s", r < 0 ? ": " : "",
                 r < 0 ? strerror(errno) : "");
        conn_close(c, c->state != CS_READY);
        return false;
    }
    uint64_t now = now_ns();
    size_t total = have + (size_t)r, pos = 0;
    struct mqtt_decoder_opts opts = {.role = MQTT_ROLE_CLIENT, .version = w->cfg->version};
    while (pos < total && c->fd >= 0) {
        struct mqtt_packet p;
        size_t used = 0;
        uint8_t reason = 0;
        enum mqtt_decode_status s = mqtt_decode(w->rbuf + pos, total - pos, &opts, &p,
                                                &used, &reason);
        if (s == MQTT_DECODE_MORE)
            break;
        if (s == MQTT_DECODE_ERROR) {
            werr(w, "malformed packet from broker (reason 0x%02x)", reason);
            st_add(&w->st.proto_errors, 1);
            conn_close(c, c->state != CS_READY);
            return false;
        }
        on_packet(w, c, &p, now);
        pos += used;
    }
    if (c->fd < 0)
        return false;
    size_t left = total - pos;
    if (left > c->in_cap) {
        uint8_t *nb = realloc(c->in, left);
        if (!nb) {
            conn_close(c, true);
            return false;
        }
        c->in = nb;
        c->in_cap = left;
    }
    if (left)
        memcpy(c->in, w->rbuf + pos, left);
    c->in_len = left;
    return (size_t)r == READ_CHUNK;
}

/* Subscribers may read several chunks in a row so that a loop iteration in
 * which many publishers generate messages does not starve them. */
static void on_readable(struct worker *w, struct conn *c)
{
    unsigned n = c->role == ROLE_SUB ? SUB_READS : 1;
    for (unsigned i = 0; i < n && c->fd >= 0; i++)
        if (!read_once(w, c))
            return;
}

/* ---- the loop ------------------------------------------------------------ */

static void housekeeping(struct worker *w, uint64_t now)
{
    uint64_t ka = (uint64_t)w->cfg->keepalive * 1000000000ull / 2;
    for (size_t i = 0; i < w->nconn; i++) {
        struct conn *c = i < w->nsub ? w->subs[i] : w->pubs[i - w->nsub];
        if (c->fd < 0)
            continue;
        if (c->state == CS_READY) {
            if (ka && now - c->last_tx > ka) {
                struct mqtt_packet p;
                memset(&p, 0, sizeof p);
                p.type = MQTT_PINGREQ;
                send_packet(c, &p);
                c->last_tx = now;
            }
        } else if (now - c->t_connect > HANDSHAKE_TIMEOUT_NS) {
            werr(w, "handshake timeout");
            conn_close(c, true);
        }
    }
}

/* Start the attempts of one list that are due (conn_rate spread over the
 * workers, at most MAX_PENDING handshakes at once); returns when to try
 * again. */
static uint64_t start_list(struct worker *w, struct conn **list, size_t n, size_t *next,
                           uint64_t *t0, uint64_t now)
{
    if (*next >= n)
        return UINT64_MAX;
    if (!*t0)
        *t0 = now;
    double rate = w->cfg->conn_rate / w->cfg->threads;
    uint64_t allowed = rate > 0 ? (uint64_t)((double)(now - *t0) * rate / 1e9) + 1
                                : UINT64_MAX;
    while (*next < n && *next < allowed && w->pending < MAX_PENDING) {
        conn_start(w, list[*next], now);
        (*next)++;
    }
    if (*next >= n || w->pending >= MAX_PENDING)
        return UINT64_MAX;
    return *t0 + (uint64_t)((double)*next * 1e9 / rate);
}

static uint64_t start_connects(struct worker *w, int ph, uint64_t now)
{
    uint64_t wake = start_list(w, w->subs, w->nsub, &w->next_sub, &w->sub_t0, now);
    if (ph >= PH_PUBS) {
        uint64_t t = start_list(w, w->pubs, w->npub, &w->next_pub, &w->pub_t0, now);
        if (t < wake)
            wake = t;
    }
    return wake;
}

static void apply_stall(struct worker *w, bool on)
{
    w->stalled = on;
    for (size_t i = 0; i < w->nsub; i++)
        if (w->subs[i]->fd >= 0 && w->subs[i]->state != CS_TCP)
            set_events(w->subs[i], wanted_events(w->subs[i]));
}

void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct bench_cfg *cfg = w->cfg;
    struct epoll_event evs[256];
    uint64_t last_house = now_ns();
    bool run_seen = false, pubs_stopped = false;
    for (;;) {
        int ph = atomic_load_explicit(&g_phase, memory_order_acquire);
        if (ph >= PH_QUIT)
            break;
        uint64_t now = now_ns();
        uint64_t wake = start_connects(w, ph, now);
        if (ph >= PH_RUN && !run_seen) {
            run_seen = true;
            if (cfg->sub_stall > 0) {
                w->stall_until = ld(&g_run_start) + (uint64_t)(cfg->sub_stall * 1e9);
                apply_stall(w, true);
            }
        }
        if (w->stalled) {
            if (now >= w->stall_until)
                apply_stall(w, false);
            else if (w->stall_until < wake)
                wake = w->stall_until;
        }
        if (ph == PH_RUN && now >= ld(&g_run_start)) {
            unsigned budget = PUB_BUDGET;
            size_t first = w->pub_rr++ % (w->npub ? w->npub : 1);
            for (size_t i = 0; i < w->npub; i++) {
                uint64_t t = pub_pump(w, w->pubs[(first + i) % w->npub], now, &budget);
                if (t < wake)
                    wake = t;
            }
        } else if (ph >= PH_STOP && !pubs_stopped) {
            pubs_stopped = true;
            for (size_t i = 0; i < w->npub; i++)
                pub_finish(w, w->pubs[i]);
        }
        for (size_t i = 0; i < w->ndirty; i++)
            flush(w->dirty[i]);
        w->ndirty = 0;
        int timeout = 20;
        if (wake <= now)
            timeout = 0;
        else if (wake - now < 20000000ull)
            timeout = (int)((wake - now + 999999) / 1000000);
        int n = epoll_wait(w->ep, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            uint32_t e = evs[i].events;
            if (c->state == CS_TCP) {
                if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    on_connected(c);
                continue;
            }
            if (e & EPOLLOUT)
                mark_dirty(c);
            if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(w, c);
        }
        now = now_ns();
        if (now - last_house >= 500000000ull) {
            last_house = now;
            housekeeping(w, now);
        }
    }
    /* Orderly goodbye: DISCONNECT, one flush, close. */
    for (size_t i = 0; i < w->nconn; i++) {
        struct conn *c = i < w->nsub ? w->subs[i] : w->pubs[i - w->nsub];
        if (c->fd >= 0 && c->state == CS_READY) {
            struct mqtt_packet p;
            memset(&p, 0, sizeof p);
            p.type = MQTT_DISCONNECT;
            send_packet(c, &p);
            flush(c);
        }
        conn_close(c, false);
    }
    w->ndirty = 0;
    return NULL;
}

int worker_init(struct worker *w, const struct bench_cfg *cfg, uint32_t id)
{
    w->cfg = cfg;
    w->id = id;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0)
        return -1;
    w->rbuf_cap = READ_CHUNK * 2 + cfg->size;
    w->rbuf = malloc(w->rbuf_cap);
    w->payload = malloc(cfg->size);
    w->nconn = w->nsub + w->npub;
    w->dirty = calloc(w->nconn ? w->nconn : 1, sizeof *w->dirty);
    if (!w->rbuf || !w->payload || !w->dirty)
        return -1;
    for (uint32_t i = 0; i < cfg->size; i++)
        w->payload[i] = (uint8_t)('a' + i % 26);
    hist_init(&w->lat);
    hist_init(&w->conn_lat);
    return 0;
}

void worker_free(struct worker *w)
{
    if (w->ep >= 0)
        close(w->ep);
    free(w->rbuf);
    free(w->payload);
    free(w->dirty);
}
