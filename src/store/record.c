/* record.c - encoding and decoding of store records (see record.h and
 * docs/storage.md). No I/O, no allocation. */
#include "store/record.h"

#include <string.h>

/* ---- writer: counts every byte, stores those that fit ---------------- */

struct wr {
    uint8_t *p;
    size_t cap, len;
};

static void put(struct wr *w, const void *src, size_t n)
{
    if (n && w->len + n <= w->cap)
        memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void put8(struct wr *w, uint8_t v) { put(w, &v, 1); }

static void put_be(struct wr *w, uint64_t v, int bytes)
{
    uint8_t b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    put(w, b, (size_t)bytes);
}

/* ---- reader: fails once anything is short ----------------------------- */

struct rd {
    const uint8_t *p;
    size_t len, off;
    bool bad;
};

static const uint8_t *take(struct rd *r, size_t n)
{
    if (r->bad || r->len - r->off < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *q = r->p + r->off;
    r->off += n;
    return q;
}

static uint64_t get_be(struct rd *r, int bytes)
{
    const uint8_t *q = take(r, (size_t)bytes);
    uint64_t v = 0;
    if (q)
        for (int i = 0; i < bytes; i++)
            v = v << 8 | q[i];
    return v;
}

static uint8_t get8(struct rd *r) { return (uint8_t)get_be(r, 1); }

/* ---- keys ----------------------------------------------------------- */

static void put_cid(struct wr *w, uint8_t kind, const char *cid, size_t cid_len)
{
    put8(w, kind);
    put_be(w, cid_len, 2);
    put(w, cid, cid_len);
}

size_t rec_key_meta(uint8_t *out)
{
    out[0] = REC_META;
    return 1;
}

size_t rec_key_session(uint8_t *out, const char *cid, size_t cid_len)
{
    struct wr w = {out, RECORD_KEY_MAX, 0};
    put_cid(&w, REC_SESSION, cid, cid_len);
    return w.len;
}

size_t rec_key_sub(uint8_t *out, const char *cid, size_t cid_len,
                   const char *filter, size_t filter_len)
{
    struct wr w = {out, RECORD_KEY_MAX, 0};
    put_cid(&w, REC_SUB, cid, cid_len);
    put(&w, filter, filter_len);
    return w.len;
}

size_t rec_key_message(uint8_t *out, uint64_t id)
{
    struct wr w = {out, RECORD_KEY_MAX, 0};
    put8(&w, REC_MESSAGE);
    put_be(&w, id, 8);
    return w.len;
}

size_t rec_key_delivery(uint8_t *out, uint8_t kind, const char *cid, size_t cid_len,
                        uint64_t seq)
{
    struct wr w = {out, RECORD_KEY_MAX, 0};
    put_cid(&w, kind, cid, cid_len);
    put_be(&w, seq, 8);
    return w.len;
}

size_t rec_key_qos2(uint8_t *out, const char *cid, size_t cid_len, uint16_t pid)
{
    struct wr w = {out, RECORD_KEY_MAX, 0};
    put_cid(&w, REC_QOS2_IN, cid, cid_len);
    put_be(&w, pid, 2);
    return w.len;
}

size_t rec_key_retained(uint8_t *out, const char *topic, size_t topic_len)
{
    struct wr w = {out, RECORD_KEY_MAX, 0};
    put8(&w, REC_RETAINED);
    put(&w, topic, topic_len);
    return w.len;
}

size_t rec_key_delayed(uint8_t *out, uint64_t due, uint64_t seq)
{
    struct wr w = {out, RECORD_KEY_MAX, 0};
    put8(&w, REC_DELAYED);
    put_be(&w, due, 8);
    put_be(&w, seq, 8);
    return w.len;
}

void rec_key_client_range(uint8_t *lo, size_t *lo_len, uint8_t *hi, size_t *hi_len,
                          uint8_t kind, const char *cid, size_t cid_len)
{
    struct wr a = {lo, RECORD_KEY_MAX, 0}, b = {hi, RECORD_KEY_MAX, 0};
    put_cid(&a, kind, cid, cid_len);
    put_cid(&b, kind, cid, cid_len);
    /* Every key of this client and kind is the prefix plus a suffix; the
     * first key after all of them is the prefix read as a number plus one
     * (trailing 0xff bytes dropped, the byte before them incremented). The
     * prefix starts with the kind byte, never 0xff, so this terminates. */
    size_t n = b.len;
    while (n > 0 && hi[n - 1] == 0xff)
        n--;
    hi[n - 1]++;
    *lo_len = a.len;
    *hi_len = n;
}

bool rec_key_decode(const uint8_t *k, size_t len, struct rec_key *out)
{
    memset(out, 0, sizeof(*out));
    struct rd r = {k, len, 0, false};
    out->kind = get8(&r);
    switch (out->kind) {
    case REC_META:
        return !r.bad && r.off == len;
    case REC_SESSION:
    case REC_SUB:
    case REC_DELIVERY:
    case REC_COLD:
    case REC_QOS2_IN:
        out->cid_len = (uint16_t)get_be(&r, 2);
        out->cid = (const char *)take(&r, out->cid_len);
        if (r.bad)
            return false;
        if (out->kind == REC_SUB) {
            out->name = (const char *)(k + r.off);
            out->name_len = len - r.off;
            return out->name_len > 0;
        }
        if (out->kind == REC_DELIVERY || out->kind == REC_COLD)
            out->num = get_be(&r, 8);
        else if (out->kind == REC_QOS2_IN)
            out->num = get_be(&r, 2);
        return !r.bad && r.off == len;
    case REC_MESSAGE:
        out->num = get_be(&r, 8);
        return !r.bad && r.off == len;
    case REC_RETAINED:
        out->name = (const char *)(k + r.off);
        out->name_len = len - r.off;
        return !r.bad && out->name_len > 0 && out->name_len <= UINT16_MAX;
    case REC_DELAYED:
        out->num = get_be(&r, 8);
        out->num2 = get_be(&r, 8);
        return !r.bad && r.off == len;
    default:
        return false;
    }
}

/* ---- values --------------------------------------------------------- */

#define VALUE_VERSION 1

static void put_message(struct wr *w, const struct rec_message *m)
{
    put8(w, m->qos);
    put8(w, m->retain ? 1 : 0);
    put_be(w, m->expiry_at, 8);
    put_be(w, m->origin_hash, 4);
    put_be(w, m->topic_len, 2);
    put(w, m->topic, m->topic_len);
    put_be(w, m->props_len, 4);
    put(w, m->props, m->props_len);
    put_be(w, m->payload_len, 4);
    put(w, m->payload, m->payload_len);
}

static void get_message(struct rd *r, struct rec_message *m)
{
    m->qos = get8(r);
    uint8_t retain = get8(r);
    m->retain = retain == 1;
    m->expiry_at = get_be(r, 8);
    m->origin_hash = (uint32_t)get_be(r, 4);
    m->topic_len = (uint16_t)get_be(r, 2);
    m->topic = take(r, m->topic_len);
    m->props_len = (uint32_t)get_be(r, 4);
    m->props = take(r, m->props_len);
    m->payload_len = (uint32_t)get_be(r, 4);
    m->payload = take(r, m->payload_len);
    if (m->qos > 2 || retain > 1 || m->topic_len == 0)
        r->bad = true;
}

size_t rec_message_encode(const struct rec_message *m, uint8_t *out, size_t cap)
{
    struct wr w = {out, cap, 0};
    put8(&w, VALUE_VERSION);
    put_message(&w, m);
    return w.len;
}

bool rec_message_decode(const uint8_t *v, size_t len, struct rec_message *out)
{
    struct rd r = {v, len, 0, false};
    if (get8(&r) != VALUE_VERSION)
        return false;
    get_message(&r, out);
    return !r.bad && r.off == len;
}

size_t rec_session_encode(const struct rec_session *s, uint8_t *out, size_t cap)
{
    struct wr w = {out, cap, 0};
    put8(&w, VALUE_VERSION);
    put_be(&w, s->expiry, 4);
    put8(&w, s->version);
    put8(&w, s->connected ? 1 : 0);
    put_be(&w, s->expire_at, 8);
    put8(&w, s->has_will ? 1 : 0);
    if (s->has_will) {
        put_be(&w, s->will_delay, 4);
        put_be(&w, s->will_expiry, 4);
        put_be(&w, s->will_at, 8);
        put_message(&w, &s->will);
    }
    return w.len;
}

bool rec_session_decode(const uint8_t *v, size_t len, struct rec_session *out)
{
    memset(out, 0, sizeof(*out));
    struct rd r = {v, len, 0, false};
    if (get8(&r) != VALUE_VERSION)
        return false;
    out->expiry = (uint32_t)get_be(&r, 4);
    out->version = get8(&r);
    uint8_t connected = get8(&r);
    out->connected = connected == 1;
    out->expire_at = get_be(&r, 8);
    uint8_t will = get8(&r);
    out->has_will = will == 1;
    if (out->has_will) {
        out->will_delay = (uint32_t)get_be(&r, 4);
        out->will_expiry = (uint32_t)get_be(&r, 4);
        out->will_at = get_be(&r, 8);
        get_message(&r, &out->will);
    }
    if (connected > 1 || will > 1)
        return false;
    return !r.bad && r.off == len;
}

size_t rec_sub_encode(const struct rec_sub *s, uint8_t *out, size_t cap)
{
    struct wr w = {out, cap, 0};
    put8(&w, VALUE_VERSION);
    put8(&w, s->options);
    put_be(&w, s->sub_id, 4);
    return w.len;
}

bool rec_sub_decode(const uint8_t *v, size_t len, struct rec_sub *out)
{
    struct rd r = {v, len, 0, false};
    if (get8(&r) != VALUE_VERSION)
        return false;
    out->options = get8(&r);
    out->sub_id = (uint32_t)get_be(&r, 4);
    return !r.bad && r.off == len;
}

size_t rec_delivery_encode(const struct rec_delivery *d, uint8_t *out, size_t cap)
{
    struct wr w = {out, cap, 0};
    put8(&w, VALUE_VERSION);
    put_be(&w, d->msg_id, 8);
    put8(&w, d->qos);
    put8(&w, d->flags);
    put_be(&w, d->packet_id, 2);
    uint8_t n = d->sub_id_count > REC_MAX_SUB_IDS ? REC_MAX_SUB_IDS : d->sub_id_count;
    put8(&w, n);
    for (uint8_t i = 0; i < n; i++)
        put_be(&w, d->sub_ids[i], 4);
    if (d->flags & REC_DELIVERY_INLINE)
        put_message(&w, &d->message);
    return w.len;
}

bool rec_delivery_decode(const uint8_t *v, size_t len, struct rec_delivery *out)
{
    memset(out, 0, sizeof(*out));
    struct rd r = {v, len, 0, false};
    if (get8(&r) != VALUE_VERSION)
        return false;
    out->msg_id = get_be(&r, 8);
    out->qos = get8(&r);
    out->flags = get8(&r);
    out->packet_id = (uint16_t)get_be(&r, 2);
    out->sub_id_count = get8(&r);
    if (out->sub_id_count > REC_MAX_SUB_IDS || out->qos > 2)
        return false;
    for (uint8_t i = 0; i < out->sub_id_count; i++)
        out->sub_ids[i] = (uint32_t)get_be(&r, 4);
    if (out->flags & REC_DELIVERY_INLINE)
        get_message(&r, &out->message);
    return !r.bad && r.off == len;
}

size_t rec_meta_encode(uint8_t *out, size_t cap)
{
    struct wr w = {out, cap, 0};
    put_be(&w, STORE_FORMAT_VERSION, 4);
    return w.len;
}

int rec_meta_decode(const uint8_t *v, size_t len)
{
    struct rd r = {v, len, 0, false};
    uint64_t ver = get_be(&r, 4);
    return r.bad || r.off != len || ver > 1000000 ? -1 : (int)ver;
}
