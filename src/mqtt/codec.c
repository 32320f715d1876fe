/* codec.c - the encoding half of the MQTT codec plus what both halves share:
 * variable byte integers, property blocks, packet encoding, the iterators
 * over user properties and subscription lists, and helpers that build those
 * lists. Packet decoding lives in decode.c.
 */
#include "mqtt/codec.h"

#include <string.h>

#define PROP_ID_MAX MQTT_PROP_SHARED_SUB_AVAILABLE

size_t mqtt_varint_encode(uint32_t v, uint8_t *out, size_t cap)
{
    if (v > MQTT_MAX_REMAINING)
        return 0;
    size_t n = mqtt_varint_len(v);
    if (cap < n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = v & 0x7F;
        v >>= 7;
        out[i] = (uint8_t)(b | (i + 1 < n ? 0x80 : 0));
    }
    return n;
}

int mqtt_varint_decode(const uint8_t *buf, size_t len, uint32_t *v)
{
    uint32_t val = 0;
    for (size_t i = 0; i < 4; i++) {
        if (i >= len)
            return 0;
        val |= (uint32_t)(buf[i] & 0x7F) << (7 * i);
        if (!(buf[i] & 0x80)) {
            *v = val;
            return (int)i + 1;
        }
    }
    return -1; /* the fourth byte still had the continuation bit */
}

/* Wire type of each property value, indexed by property id (0 = unknown). */
enum { PT_NONE, PT_BYTE, PT_U16, PT_U32, PT_VARINT, PT_BIN, PT_PAIR };

static const uint8_t prop_types[PROP_ID_MAX + 1] = {
    [MQTT_PROP_PAYLOAD_FORMAT] = PT_BYTE,
    [MQTT_PROP_MESSAGE_EXPIRY] = PT_U32,
    [MQTT_PROP_CONTENT_TYPE] = PT_BIN,
    [MQTT_PROP_RESPONSE_TOPIC] = PT_BIN,
    [MQTT_PROP_CORRELATION_DATA] = PT_BIN,
    [MQTT_PROP_SUBSCRIPTION_ID] = PT_VARINT,
    [MQTT_PROP_SESSION_EXPIRY] = PT_U32,
    [MQTT_PROP_ASSIGNED_CLIENT_ID] = PT_BIN,
    [MQTT_PROP_SERVER_KEEPALIVE] = PT_U16,
    [MQTT_PROP_AUTH_METHOD] = PT_BIN,
    [MQTT_PROP_AUTH_DATA] = PT_BIN,
    [MQTT_PROP_REQUEST_PROBLEM_INFO] = PT_BYTE,
    [MQTT_PROP_WILL_DELAY] = PT_U32,
    [MQTT_PROP_REQUEST_RESPONSE_INFO] = PT_BYTE,
    [MQTT_PROP_RESPONSE_INFO] = PT_BIN,
    [MQTT_PROP_SERVER_REFERENCE] = PT_BIN,
    [MQTT_PROP_REASON_STRING] = PT_BIN,
    [MQTT_PROP_RECEIVE_MAX] = PT_U16,
    [MQTT_PROP_TOPIC_ALIAS_MAX] = PT_U16,
    [MQTT_PROP_TOPIC_ALIAS] = PT_U16,
    [MQTT_PROP_MAX_QOS] = PT_BYTE,
    [MQTT_PROP_RETAIN_AVAILABLE] = PT_BYTE,
    [MQTT_PROP_USER_PROPERTY] = PT_PAIR,
    [MQTT_PROP_MAX_PACKET_SIZE] = PT_U32,
    [MQTT_PROP_WILDCARD_SUB_AVAILABLE] = PT_BYTE,
    [MQTT_PROP_SUB_ID_AVAILABLE] = PT_BYTE,
    [MQTT_PROP_SHARED_SUB_AVAILABLE] = PT_BYTE,
};

/* Skip a length-prefixed field at buf[pos]; 0 when it runs past len. */
static size_t skip_bin(const uint8_t *buf, size_t len, size_t pos)
{
    if (len - pos < 2)
        return 0;
    size_t n = (size_t)buf[pos] << 8 | buf[pos + 1];
    if (len - pos - 2 < n)
        return 0;
    return pos + 2 + n;
}

/* Offset just past the property starting at buf[pos], or 0 if it is
 * unknown or truncated (a property is at least 2 bytes, so 0 never is a
 * valid answer). */
static size_t prop_skip(const uint8_t *buf, size_t len, size_t pos)
{
    uint8_t id = buf[pos++];
    uint8_t t = id <= PROP_ID_MAX ? prop_types[id] : PT_NONE;
    size_t need;
    uint32_t v;
    int n;
    switch (t) {
    case PT_BYTE: need = 1; break;
    case PT_U16: need = 2; break;
    case PT_U32: need = 4; break;
    case PT_VARINT:
        n = mqtt_varint_decode(buf + pos, len - pos, &v);
        return n > 0 ? pos + (size_t)n : 0;
    case PT_BIN:
        return skip_bin(buf, len, pos);
    case PT_PAIR:
        pos = skip_bin(buf, len, pos);
        return pos ? skip_bin(buf, len, pos) : 0;
    default:
        return 0;
    }
    return len - pos >= need ? pos + need : 0;
}

/* User properties may be interleaved with other properties on the wire; the
 * decoder keeps one slice from the first to the last user property, so the
 * iterator steps over anything that is not a user property. */
bool mqtt_user_props_next(const struct mqtt_bytes *user_props, uint32_t *pos,
                          struct mqtt_bytes *key, struct mqtt_bytes *value)
{
    const uint8_t *b = user_props->ptr;
    size_t len = user_props->len, p = *pos;
    while (p < len) {
        size_t next = prop_skip(b, len, p);
        if (!next)
            return false;
        if (b[p] == MQTT_PROP_USER_PROPERTY) {
            key->ptr = b + p + 3;
            key->len = (uint32_t)b[p + 1] << 8 | b[p + 2];
            size_t vp = p + 3 + key->len;
            value->ptr = b + vp + 2;
            value->len = (uint32_t)b[vp] << 8 | b[vp + 1];
            *pos = (uint32_t)next;
            return true;
        }
        p = next;
    }
    *pos = (uint32_t)p;
    return false;
}

/* ---- property block encoding ------------------------------------------ */

static size_t w_u16(uint8_t *o, uint16_t v)
{
    o[0] = (uint8_t)(v >> 8);
    o[1] = (uint8_t)v;
    return 2;
}

static size_t w_u32(uint8_t *o, uint32_t v)
{
    o[0] = (uint8_t)(v >> 24);
    o[1] = (uint8_t)(v >> 16);
    o[2] = (uint8_t)(v >> 8);
    o[3] = (uint8_t)v;
    return 4;
}

/* The property block is written in two modes that share one routine, so
 * the length and the bytes can never disagree: with out == NULL it only
 * counts. *bad is set for values the wire cannot carry (strings over 64 KiB,
 * subscription ids out of range, unparseable user property bytes). */
struct pw {
    uint8_t *out;
    size_t n;
    bool bad;
};

static void pw_put(struct pw *w, const void *src, size_t n)
{
    if (w->out && n)
        memcpy(w->out + w->n, src, n);
    w->n += n;
}

static void pw_byte(struct pw *w, uint8_t id, uint8_t v)
{
    if (w->out) {
        w->out[w->n] = id;
        w->out[w->n + 1] = v;
    }
    w->n += 2;
}

static void pw_u16(struct pw *w, uint8_t id, uint16_t v)
{
    if (w->out) {
        w->out[w->n] = id;
        w_u16(w->out + w->n + 1, v);
    }
    w->n += 3;
}

static void pw_u32(struct pw *w, uint8_t id, uint32_t v)
{
    if (w->out) {
        w->out[w->n] = id;
        w_u32(w->out + w->n + 1, v);
    }
    w->n += 5;
}

static void pw_bin(struct pw *w, uint8_t id, const struct mqtt_bytes *b)
{
    if (b->len > 65535) {
        w->bad = true;
        return;
    }
    if (w->out) {
        w->out[w->n] = id;
        w_u16(w->out + w->n + 1, (uint16_t)b->len);
    }
    w->n += 3;
    pw_put(w, b->ptr, b->len);
}

static void pw_varint(struct pw *w, uint8_t id, uint32_t v)
{
    if (v == 0 || v > MQTT_MAX_REMAINING) {
        w->bad = true;
        return;
    }
    if (w->out) {
        w->out[w->n] = id;
        mqtt_varint_encode(v, w->out + w->n + 1, 4);
    }
    w->n += 1 + mqtt_varint_len(v);
}

/* Copy only the user property entries: a decoded slice can contain other
 * properties that were interleaved on the wire, and those are written from
 * their own fields. */
static void pw_user_props(struct pw *w, const struct mqtt_bytes *up)
{
    size_t pos = 0;
    while (pos < up->len) {
        size_t next = prop_skip(up->ptr, up->len, pos);
        if (!next) {
            w->bad = true;
            return;
        }
        if (up->ptr[pos] == MQTT_PROP_USER_PROPERTY)
            pw_put(w, up->ptr + pos, next - pos);
        pos = next;
    }
}

static void props_body(struct pw *w, const struct mqtt_props *p)
{
    uint64_t m = p->present;
#define HAS(id) ((m >> (id)) & 1u)
    if (HAS(MQTT_PROP_PAYLOAD_FORMAT))
        pw_byte(w, MQTT_PROP_PAYLOAD_FORMAT, p->payload_format);
    if (HAS(MQTT_PROP_MESSAGE_EXPIRY))
        pw_u32(w, MQTT_PROP_MESSAGE_EXPIRY, p->message_expiry);
    if (HAS(MQTT_PROP_CONTENT_TYPE))
        pw_bin(w, MQTT_PROP_CONTENT_TYPE, &p->content_type);
    if (HAS(MQTT_PROP_RESPONSE_TOPIC))
        pw_bin(w, MQTT_PROP_RESPONSE_TOPIC, &p->response_topic);
    if (HAS(MQTT_PROP_CORRELATION_DATA))
        pw_bin(w, MQTT_PROP_CORRELATION_DATA, &p->correlation_data);
    if (HAS(MQTT_PROP_SUBSCRIPTION_ID)) {
        uint32_t n = p->sub_id_count == 0 ? 1 : p->sub_id_count > 8 ? 8 : p->sub_id_count;
        for (uint32_t i = 0; i < n; i++)
            pw_varint(w, MQTT_PROP_SUBSCRIPTION_ID, p->sub_ids[i]);
    }
    if (HAS(MQTT_PROP_SESSION_EXPIRY))
        pw_u32(w, MQTT_PROP_SESSION_EXPIRY, p->session_expiry);
    if (HAS(MQTT_PROP_ASSIGNED_CLIENT_ID))
        pw_bin(w, MQTT_PROP_ASSIGNED_CLIENT_ID, &p->assigned_client_id);
    if (HAS(MQTT_PROP_SERVER_KEEPALIVE))
        pw_u16(w, MQTT_PROP_SERVER_KEEPALIVE, p->server_keepalive);
    if (HAS(MQTT_PROP_AUTH_METHOD))
        pw_bin(w, MQTT_PROP_AUTH_METHOD, &p->auth_method);
    if (HAS(MQTT_PROP_AUTH_DATA))
        pw_bin(w, MQTT_PROP_AUTH_DATA, &p->auth_data);
    if (HAS(MQTT_PROP_REQUEST_PROBLEM_INFO))
        pw_byte(w, MQTT_PROP_REQUEST_PROBLEM_INFO, p->request_problem_info);
    if (HAS(MQTT_PROP_WILL_DELAY))
        pw_u32(w, MQTT_PROP_WILL_DELAY, p->will_delay);
    if (HAS(MQTT_PROP_REQUEST_RESPONSE_INFO))
        pw_byte(w, MQTT_PROP_REQUEST_RESPONSE_INFO, p->request_response_info);
    if (HAS(MQTT_PROP_RESPONSE_INFO))
        pw_bin(w, MQTT_PROP_RESPONSE_INFO, &p->response_info);
    if (HAS(MQTT_PROP_SERVER_REFERENCE))
        pw_bin(w, MQTT_PROP_SERVER_REFERENCE, &p->server_reference);
    if (HAS(MQTT_PROP_REASON_STRING))
        pw_bin(w, MQTT_PROP_REASON_STRING, &p->reason_string);
    if (HAS(MQTT_PROP_RECEIVE_MAX))
        pw_u16(w, MQTT_PROP_RECEIVE_MAX, p->receive_max);
    if (HAS(MQTT_PROP_TOPIC_ALIAS_MAX))
        pw_u16(w, MQTT_PROP_TOPIC_ALIAS_MAX, p->topic_alias_max);
    if (HAS(MQTT_PROP_TOPIC_ALIAS))
        pw_u16(w, MQTT_PROP_TOPIC_ALIAS, p->topic_alias);
    if (HAS(MQTT_PROP_MAX_QOS))
        pw_byte(w, MQTT_PROP_MAX_QOS, p->max_qos);
    if (HAS(MQTT_PROP_RETAIN_AVAILABLE))
        pw_byte(w, MQTT_PROP_RETAIN_AVAILABLE, p->retain_available);
    if (HAS(MQTT_PROP_MAX_PACKET_SIZE))
        pw_u32(w, MQTT_PROP_MAX_PACKET_SIZE, p->max_packet_size);
    if (HAS(MQTT_PROP_WILDCARD_SUB_AVAILABLE))
        pw_byte(w, MQTT_PROP_WILDCARD_SUB_AVAILABLE, p->wildcard_sub_available);
    if (HAS(MQTT_PROP_SUB_ID_AVAILABLE))
        pw_byte(w, MQTT_PROP_SUB_ID_AVAILABLE, p->sub_id_available);
    if (HAS(MQTT_PROP_SHARED_SUB_AVAILABLE))
        pw_byte(w, MQTT_PROP_SHARED_SUB_AVAILABLE, p->shared_sub_available);
#undef HAS
    if (p->user_props.len)
        pw_user_props(w, &p->user_props);
}

static size_t props_body_len(const struct mqtt_props *props, bool *bad)
{
    struct pw w = {NULL, 0, false};
    props_body(&w, props);
    if (w.n > MQTT_MAX_REMAINING)
        w.bad = true;
    if (bad)
        *bad = w.bad;
    return w.n;
}

size_t mqtt_props_len(const struct mqtt_props *props)
{
    return props_body_len(props, NULL);
}

static size_t props_encode_body(const struct mqtt_props *props, size_t body_len,
                                uint8_t *out)
{
    size_t n = mqtt_varint_encode((uint32_t)body_len, out, 4);
    struct pw w = {out + n, 0, false};
    props_body(&w, props);
    return n + w.n;
}

size_t mqtt_props_encode(const struct mqtt_props *props, uint8_t *out, size_t cap)
{
    bool bad;
    size_t body = props_body_len(props, &bad);
    if (bad || cap < mqtt_varint_len((uint32_t)body) + body)
        return 0;
    return props_encode_body(props, body, out);
}

/* ---- subscription lists ----------------------------------------------- */

uint8_t mqtt_sub_opts_byte(const struct mqtt_sub_opts *o)
{
    return (uint8_t)((o->qos & 3) | (o->no_local ? 0x04 : 0) |
                     (o->retain_as_published ? 0x08 : 0) |
                     ((o->retain_handling & 3) << 4));
}

size_t mqtt_sub_list_append(uint8_t *out, size_t cap, size_t used, const char *filter,
                            size_t len, const struct mqtt_sub_opts *o, bool with_opts)
{
    size_t need = 2 + len + (with_opts ? 1 : 0);
    if (len > 65535 || used > cap || cap - used < need || (with_opts && !o))
        return 0;
    uint8_t *p = out + used;
    w_u16(p, (uint16_t)len);
    if (len)
        memcpy(p + 2, filter, len);
    if (with_opts)
        p[2 + len] = mqtt_sub_opts_byte(o);
    return used + need;
}

size_t mqtt_user_prop_append(uint8_t *out, size_t cap, size_t used, const char *key,
                             size_t klen, const char *val, size_t vlen)
{
    size_t need = 5 + klen + vlen;
    if (klen > 65535 || vlen > 65535 || used > cap || cap - used < need)
        return 0;
    uint8_t *p = out + used;
    p[0] = MQTT_PROP_USER_PROPERTY;
    w_u16(p + 1, (uint16_t)klen);
    if (klen)
        memcpy(p + 3, key, klen);
    w_u16(p + 3 + klen, (uint16_t)vlen);
    if (vlen)
        memcpy(p + 5 + klen, val, vlen);
    return used + need;
}

/* Both iterators bound-check every step: the list may have been built by
 * hand rather than validated by the decoder. */
bool mqtt_sub_next(const struct mqtt_subscribe *s, uint32_t *pos,
                   struct mqtt_bytes *filter, struct mqtt_sub_opts *opts)
{
    size_t len = s->list.len, p = *pos;
    if (p >= len)
        return false;
    size_t next = skip_bin(s->list.ptr, len, p);
    if (!next || next >= len)
        return false;
    uint8_t o = s->list.ptr[next];
    filter->ptr = s->list.ptr + p + 2;
    filter->len = (uint32_t)(next - p - 2);
    opts->qos = o & 3;
    opts->no_local = (o >> 2) & 1;
    opts->retain_as_published = (o >> 3) & 1;
    opts->retain_handling = (o >> 4) & 3;
    *pos = (uint32_t)next + 1;
    return true;
}

bool mqtt_unsub_next(const struct mqtt_subscribe *s, uint32_t *pos,
                     struct mqtt_bytes *filter)
{
    size_t len = s->list.len, p = *pos;
    if (p >= len)
        return false;
    size_t next = skip_bin(s->list.ptr, len, p);
    if (!next)
        return false;
    filter->ptr = s->list.ptr + p + 2;
    filter->len = (uint32_t)(next - p - 2);
    *pos = (uint32_t)next;
    return true;
}

/* ---- packet encoding -------------------------------------------------- */

/* Every packet body is produced by one routine run twice: once counting
 * (out == NULL) to learn the remaining length the fixed header needs, then
 * writing. That keeps mqtt_encoded_len() and mqtt_encode() identical by
 * construction; the extra pass touches only header fields, never payloads. */

static void pw_u8v(struct pw *w, uint8_t v)
{
    if (w->out)
        w->out[w->n] = v;
    w->n++;
}

static void pw_u16v(struct pw *w, uint16_t v)
{
    if (w->out)
        w_u16(w->out + w->n, v);
    w->n += 2;
}

/* A two-byte length followed by the bytes (UTF-8 string or binary data). */
static void pw_field(struct pw *w, const void *p, size_t len)
{
    if (len > 65535) {
        w->bad = true;
        return;
    }
    pw_u16v(w, (uint16_t)len);
    pw_put(w, p, len);
}

static void pw_props(struct pw *w, const struct mqtt_props *p)
{
    bool bad;
    size_t body = props_body_len(p, &bad);
    if (bad) {
        w->bad = true;
        return;
    }
    if (w->out)
        props_encode_body(p, body, w->out + w->n);
    w->n += mqtt_varint_len((uint32_t)body) + body;
}

static void body_connect(struct pw *w, const struct mqtt_connect *c, uint8_t ver)
{
    bool v5 = ver == MQTT_V5;
    if (ver == MQTT_V31)
        pw_field(w, "MQIsdp", 6);
    else
        pw_field(w, "MQTT", 4);
    pw_u8v(w, ver);
    if ((c->will_flag && c->will_qos > 2) || (!v5 && c->has_password && !c->has_username))
        w->bad = true;
    uint8_t flags = (uint8_t)((c->clean_start ? 0x02 : 0) |
                              (c->has_password ? 0x40 : 0) | (c->has_username ? 0x80 : 0));
    if (c->will_flag)
        flags |= (uint8_t)(0x04 | (c->will_qos & 3) << 3 | (c->will_retain ? 0x20 : 0));
    pw_u8v(w, flags);
    pw_u16v(w, c->keepalive);
    if (v5)
        pw_props(w, &c->props);
    pw_field(w, c->client_id.ptr, c->client_id.len);
    if (c->will_flag) {
        if (v5)
            pw_props(w, &c->will_props);
        pw_field(w, c->will_topic.ptr, c->will_topic.len);
        pw_field(w, c->will_payload.ptr, c->will_payload.len);
    }
    if (c->has_username)
        pw_field(w, c->username.ptr, c->username.len);
    if (c->has_password)
        pw_field(w, c->password.ptr, c->password.len);
}

static void body_connack(struct pw *w, const struct mqtt_connack *c, uint8_t ver)
{
    /* 3.1 has no Session Present flag: the byte is reserved. */
    pw_u8v(w, ver != MQTT_V31 && c->session_present ? 1 : 0);
    pw_u8v(w, c->code);
    if (ver == MQTT_V5)
        pw_props(w, &c->props);
}

static void body_publish(struct pw *w, const struct mqtt_publish *p, uint8_t ver,
                         bool with_payload)
{
    if (p->qos > 2 || (p->qos == 0 && p->dup) || (p->qos && !p->packet_id))
        w->bad = true;
    pw_field(w, p->topic.ptr, p->topic.len);
    if (p->qos)
        pw_u16v(w, p->packet_id);
    if (ver == MQTT_V5)
        pw_props(w, &p->props);
    if (with_payload)
        pw_put(w, p->payload.ptr, p->payload.len);
}

/* 5.0 acks, DISCONNECT and AUTH use the short forms: no reason code and no
 * property length when the reason is 0 and there are no properties. */
static void body_ack(struct pw *w, const struct mqtt_ack *a, uint8_t ver)
{
    pw_u16v(w, a->packet_id);
    if (ver != MQTT_V5)
        return;
    size_t plen = props_body_len(&a->props, NULL);
    if (a->reason || plen)
        pw_u8v(w, a->reason);
    if (plen)
        pw_props(w, &a->props);
}

static void body_subscribe(struct pw *w, const struct mqtt_subscribe *s, uint8_t ver)
{
    pw_u16v(w, s->packet_id);
    if (ver == MQTT_V5)
        pw_props(w, &s->props);
    if (!s->list.len)
        w->bad = true;
    pw_put(w, s->list.ptr, s->list.len);
}

static void body_suback(struct pw *w, const struct mqtt_suback *s, uint8_t ver,
                        bool unsuback)
{
    pw_u16v(w, s->packet_id);
    if (unsuback && ver != MQTT_V5)
        return; /* 3.x UNSUBACK carries nothing but the packet id */
    if (ver == MQTT_V5)
        pw_props(w, &s->props);
    if (!s->count)
        w->bad = true;
    pw_put(w, s->codes, s->count);
}

static void body_disconnect(struct pw *w, const struct mqtt_disconnect *d, uint8_t ver,
                            bool auth)
{
    if (ver != MQTT_V5) {
        if (auth)
            w->bad = true;
        return;
    }
    size_t plen = props_body_len(&d->props, NULL);
    if (!d->reason && !plen)
        return;
    pw_u8v(w, d->reason);
    /* AUTH has no "reason code without property length" form. */
    if (plen || auth)
        pw_props(w, &d->props);
}

static void body(struct pw *w, const struct mqtt_packet *p, uint8_t ver)
{
    if (ver != MQTT_V31 && ver != MQTT_V311 && ver != MQTT_V5) {
        w->bad = true;
        return;
    }
    switch (p->type) {
    case MQTT_CONNECT: body_connect(w, &p->u.connect, ver); break;
    case MQTT_CONNACK: body_connack(w, &p->u.connack, ver); break;
    case MQTT_PUBLISH: body_publish(w, &p->u.publish, ver, true); break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: body_ack(w, &p->u.ack, ver); break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE: body_subscribe(w, &p->u.subscribe, ver); break;
    case MQTT_SUBACK: body_suback(w, &p->u.suback, ver, false); break;
    case MQTT_UNSUBACK: body_suback(w, &p->u.suback, ver, true); break;
    case MQTT_PINGREQ:
    case MQTT_PINGRESP: break;
    case MQTT_DISCONNECT: body_disconnect(w, &p->u.disconnect, ver, false); break;
    case MQTT_AUTH: body_disconnect(w, &p->u.disconnect, ver, true); break;
    default: w->bad = true; break;
    }
}

static uint8_t publish_flags(const struct mqtt_publish *p)
{
    return (uint8_t)((p->dup ? 0x08 : 0) | (p->qos & 3) << 1 | (p->retain ? 0x01 : 0));
}

static uint8_t first_byte(const struct mqtt_packet *p)
{
    uint8_t flags = 0;
    if (p->type == MQTT_PUBLISH)
        flags = publish_flags(&p->u.publish);
    else if (p->type == MQTT_PUBREL || p->type == MQTT_SUBSCRIBE || p->type == MQTT_UNSUBSCRIBE)
        flags = 0x02;
    return (uint8_t)(p->type << 4 | flags);
}

/* Remaining length of p, or SIZE_MAX when it cannot be encoded. */
static size_t body_len(const struct mqtt_packet *p, uint8_t version)
{
    struct pw w = {NULL, 0, false};
    body(&w, p, version);
    return w.bad || w.n > MQTT_MAX_REMAINING ? SIZE_MAX : w.n;
}

size_t mqtt_encoded_len(const struct mqtt_packet *p, uint8_t version)
{
    size_t rem = body_len(p, version);
    return rem == SIZE_MAX ? 0 : 1 + mqtt_varint_len((uint32_t)rem) + rem;
}

size_t mqtt_encode(const struct mqtt_packet *p, uint8_t version, uint8_t *out, size_t cap)
{
    size_t rem = body_len(p, version);
    if (rem == SIZE_MAX)
        return 0;
    size_t h = 1 + mqtt_varint_len((uint32_t)rem);
    if (h + rem > cap)
        return 0;
    out[0] = first_byte(p);
    mqtt_varint_encode((uint32_t)rem, out + 1, 4);
    struct pw w = {out + h, 0, false};
    body(&w, p, version);
    return h + rem;
}

size_t mqtt_encode_publish_header(const struct mqtt_publish *p, uint8_t version,
                                  uint8_t *out, size_t cap)
{
    if (version != MQTT_V31 && version != MQTT_V311 && version != MQTT_V5)
        return 0;
    struct pw w = {NULL, 0, false};
    body_publish(&w, p, version, false);
    size_t rem = w.n + p->payload.len;
    if (w.bad || rem > MQTT_MAX_REMAINING)
        return 0;
    size_t h = 1 + mqtt_varint_len((uint32_t)rem);
    if (h + w.n > cap)
        return 0;
    out[0] = (uint8_t)(MQTT_PUBLISH << 4 | publish_flags(p));
    mqtt_varint_encode((uint32_t)rem, out + 1, 4);
    struct pw w2 = {out + h, 0, false};
    body_publish(&w2, p, version, false);
    return h + w.n;
}
