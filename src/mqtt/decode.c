/* decode.c - the decoding half of the MQTT codec: bytes in, validated
 * packet views out (pointing into the caller's buffer), for 3.1, 3.1.1 and
 * 5.0, server or client side.
 *
 * Error vocabulary (5.0; 3.x collapses everything to MALFORMED, see
 * codec.h): an encoding the reader cannot parse - truncated fields, bad
 * UTF-8, reserved bits set, unknown property ids, trailing bytes - is
 * MALFORMED. A well-formed packet that breaks a rule - a property not
 * allowed in this packet or given twice, a value out of range, packet id 0,
 * a packet the peer's role may not send - is PROTOCOL_ERROR. The 5.0 spec is
 * not uniform here (it calls a few of these Malformed); this split is the
 * one its reason code table describes, and callers only need MALFORMED vs
 * PROTOCOL_ERROR for the DISCONNECT they send. Topic names with wildcards
 * are TOPIC_NAME_INVALID and bad UTF-8 payloads PAYLOAD_FORMAT_INVALID.
 */
#include <string.h>

#include "mqtt/codec.h"
#include "mqtt/topic.h"

#define OK 0
#define MALFORMED MQTT_RC_MALFORMED
#define PROTO MQTT_RC_PROTOCOL_ERROR

#define BIT(id) ((uint64_t)1 << (id))

/* Properties allowed per packet (MQTT 5 section 2.2.2.2). */
#define P_USER BIT(MQTT_PROP_USER_PROPERTY)
#define P_REASON (BIT(MQTT_PROP_REASON_STRING) | P_USER)
#define P_CONNECT                                                              \
    (BIT(MQTT_PROP_SESSION_EXPIRY) | BIT(MQTT_PROP_AUTH_METHOD) |              \
     BIT(MQTT_PROP_AUTH_DATA) | BIT(MQTT_PROP_REQUEST_PROBLEM_INFO) |          \
     BIT(MQTT_PROP_REQUEST_RESPONSE_INFO) | BIT(MQTT_PROP_RECEIVE_MAX) |       \
     BIT(MQTT_PROP_TOPIC_ALIAS_MAX) | BIT(MQTT_PROP_MAX_PACKET_SIZE) | P_USER)
#define P_CONNACK                                                              \
    (BIT(MQTT_PROP_SESSION_EXPIRY) | BIT(MQTT_PROP_ASSIGNED_CLIENT_ID) |       \
     BIT(MQTT_PROP_SERVER_KEEPALIVE) | BIT(MQTT_PROP_AUTH_METHOD) |            \
     BIT(MQTT_PROP_AUTH_DATA) | BIT(MQTT_PROP_RESPONSE_INFO) |                 \
     BIT(MQTT_PROP_SERVER_REFERENCE) | BIT(MQTT_PROP_RECEIVE_MAX) |            \
     BIT(MQTT_PROP_TOPIC_ALIAS_MAX) | BIT(MQTT_PROP_MAX_QOS) |                 \
     BIT(MQTT_PROP_RETAIN_AVAILABLE) | BIT(MQTT_PROP_MAX_PACKET_SIZE) |        \
     BIT(MQTT_PROP_WILDCARD_SUB_AVAILABLE) | BIT(MQTT_PROP_SUB_ID_AVAILABLE) | \
     BIT(MQTT_PROP_SHARED_SUB_AVAILABLE) | P_REASON)
#define P_MESSAGE                                                              \
    (BIT(MQTT_PROP_PAYLOAD_FORMAT) | BIT(MQTT_PROP_MESSAGE_EXPIRY) |           \
     BIT(MQTT_PROP_CONTENT_TYPE) | BIT(MQTT_PROP_RESPONSE_TOPIC) |             \
     BIT(MQTT_PROP_CORRELATION_DATA) | P_USER)
#define P_WILL (P_MESSAGE | BIT(MQTT_PROP_WILL_DELAY))
#define P_PUBLISH (P_MESSAGE | BIT(MQTT_PROP_TOPIC_ALIAS))
#define P_SUBSCRIBE (BIT(MQTT_PROP_SUBSCRIPTION_ID) | P_USER)
#define P_DISCONNECT                                                           \
    (BIT(MQTT_PROP_SESSION_EXPIRY) | BIT(MQTT_PROP_SERVER_REFERENCE) | P_REASON)
#define P_AUTH (BIT(MQTT_PROP_AUTH_METHOD) | BIT(MQTT_PROP_AUTH_DATA) | P_REASON)

/* Reason codes valid per packet (MQTT 5 section 2.4 and each packet's
 * reason code table), as one byte of kind bits per code. */
enum { K_CONNACK = 1, K_PUBACK = 2, K_PUBREL = 4, K_SUBACK = 8, K_UNSUBACK = 16,
       K_DISCONNECT = 32, K_AUTH = 64 };
static const uint8_t rc_kinds[256] = {
    [0x00] = 0x7F, /* Success / Normal disconnection / Granted QoS 0 */
    [0x01] = K_SUBACK, [0x02] = K_SUBACK,
    [0x04] = K_DISCONNECT,
    [0x10] = K_PUBACK, [0x11] = K_UNSUBACK,
    [0x18] = K_AUTH, [0x19] = K_AUTH,
    [0x80] = K_CONNACK | K_PUBACK | K_SUBACK | K_UNSUBACK | K_DISCONNECT,
    [0x81] = K_CONNACK | K_DISCONNECT,
    [0x82] = K_CONNACK | K_DISCONNECT,
    [0x83] = K_CONNACK | K_PUBACK | K_SUBACK | K_UNSUBACK | K_DISCONNECT,
    [0x84] = K_CONNACK, [0x85] = K_CONNACK, [0x86] = K_CONNACK,
    [0x87] = K_CONNACK | K_PUBACK | K_SUBACK | K_UNSUBACK | K_DISCONNECT,
    [0x88] = K_CONNACK,
    [0x89] = K_CONNACK | K_DISCONNECT,
    [0x8A] = K_CONNACK,
    [0x8B] = K_DISCONNECT,
    [0x8C] = K_CONNACK,
    [0x8D] = K_DISCONNECT, [0x8E] = K_DISCONNECT,
    [0x8F] = K_SUBACK | K_UNSUBACK | K_DISCONNECT,
    [0x90] = K_CONNACK | K_PUBACK | K_DISCONNECT,
    [0x91] = K_PUBACK | K_SUBACK | K_UNSUBACK,
    [0x92] = K_PUBREL,
    [0x93] = K_DISCONNECT, [0x94] = K_DISCONNECT,
    [0x95] = K_CONNACK | K_DISCONNECT,
    [0x96] = K_DISCONNECT,
    [0x97] = K_CONNACK | K_PUBACK | K_SUBACK | K_DISCONNECT,
    [0x98] = K_DISCONNECT,
    [0x99] = K_CONNACK | K_PUBACK | K_DISCONNECT,
    [0x9A] = K_CONNACK | K_DISCONNECT, [0x9B] = K_CONNACK | K_DISCONNECT,
    [0x9C] = K_CONNACK | K_DISCONNECT, [0x9D] = K_CONNACK | K_DISCONNECT,
    [0x9E] = K_SUBACK | K_DISCONNECT,
    [0x9F] = K_CONNACK | K_DISCONNECT,
    [0xA0] = K_DISCONNECT,
    [0xA1] = K_SUBACK | K_DISCONNECT, [0xA2] = K_SUBACK | K_DISCONNECT,
};

/* A bounded reader over one packet's remaining bytes. Running out of bytes
 * inside a complete packet is always MALFORMED. */
struct rd {
    const uint8_t *p, *end;
};

static inline size_t left(const struct rd *r)
{
    return (size_t)(r->end - r->p);
}

static inline bool get_u8(struct rd *r, uint8_t *v)
{
    if (r->p >= r->end)
        return false;
    *v = *r->p++;
    return true;
}

static inline bool get_u16(struct rd *r, uint16_t *v)
{
    if (left(r) < 2)
        return false;
    *v = (uint16_t)(r->p[0] << 8 | r->p[1]);
    r->p += 2;
    return true;
}

static inline bool get_u32(struct rd *r, uint32_t *v)
{
    if (left(r) < 4)
        return false;
    *v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    return true;
}

static inline bool get_varint(struct rd *r, uint32_t *v)
{
    int n = mqtt_varint_decode(r->p, left(r), v);
    if (n <= 0)
        return false;
    r->p += n;
    return true;
}

/* Binary data: two-byte length, then bytes. */
static inline bool get_bin(struct rd *r, struct mqtt_bytes *b)
{
    uint16_t n;
    if (!get_u16(r, &n) || left(r) < n)
        return false;
    b->ptr = r->p;
    b->len = n;
    r->p += n;
    return true;
}

/* UTF-8 Encoded String: as binary data, and well-formed. */
static inline bool get_str(struct rd *r, struct mqtt_bytes *b)
{
    return get_bin(r, b) && mqtt_utf8_valid(b->ptr, b->len);
}

/* Payload Format Indicator 1 means "UTF-8 Encoded Character Data", which
 * per RFC 3629 includes U+0000 (unlike MQTT strings). A NUL byte never
 * occurs inside a multi-byte sequence, so validate the NUL-free runs. Costs
 * one pass over the payload, only when the sender flagged it as UTF-8. */
static bool payload_utf8(const uint8_t *p, size_t n)
{
    for (;;) {
        const uint8_t *z = n ? memchr(p, 0, n) : NULL;
        size_t seg = z ? (size_t)(z - p) : n;
        if (!mqtt_utf8_valid(p, seg))
            return false;
        if (!z)
            return true;
        p = z + 1;
        n -= seg + 1;
    }
}

/* ---- properties ------------------------------------------------------- */

static inline uint8_t flag_byte(struct rd *q, uint8_t *v)
{
    if (!get_u8(q, v))
        return MALFORMED;
    return *v > 1 ? PROTO : OK;
}

static inline uint8_t nonzero_u16(struct rd *q, uint16_t *v)
{
    if (!get_u16(q, v))
        return MALFORMED;
    return *v ? OK : PROTO;
}

/* One property value into pr; the id is known and allowed. */
static uint8_t prop_value(struct rd *q, uint8_t id, struct mqtt_props *pr,
                          const uint8_t *start)
{
    uint32_t v;
    switch (id) {
    case MQTT_PROP_PAYLOAD_FORMAT: return flag_byte(q, &pr->payload_format);
    case MQTT_PROP_REQUEST_PROBLEM_INFO: return flag_byte(q, &pr->request_problem_info);
    case MQTT_PROP_REQUEST_RESPONSE_INFO: return flag_byte(q, &pr->request_response_info);
    case MQTT_PROP_MAX_QOS: return flag_byte(q, &pr->max_qos);
    case MQTT_PROP_RETAIN_AVAILABLE: return flag_byte(q, &pr->retain_available);
    case MQTT_PROP_WILDCARD_SUB_AVAILABLE: return flag_byte(q, &pr->wildcard_sub_available);
    case MQTT_PROP_SUB_ID_AVAILABLE: return flag_byte(q, &pr->sub_id_available);
    case MQTT_PROP_SHARED_SUB_AVAILABLE: return flag_byte(q, &pr->shared_sub_available);
    case MQTT_PROP_MESSAGE_EXPIRY: return get_u32(q, &pr->message_expiry) ? OK : MALFORMED;
    case MQTT_PROP_SESSION_EXPIRY: return get_u32(q, &pr->session_expiry) ? OK : MALFORMED;
    case MQTT_PROP_WILL_DELAY: return get_u32(q, &pr->will_delay) ? OK : MALFORMED;
    case MQTT_PROP_MAX_PACKET_SIZE:
        if (!get_u32(q, &pr->max_packet_size))
            return MALFORMED;
        return pr->max_packet_size ? OK : PROTO;
    case MQTT_PROP_SERVER_KEEPALIVE: return get_u16(q, &pr->server_keepalive) ? OK : MALFORMED;
    case MQTT_PROP_TOPIC_ALIAS_MAX: return get_u16(q, &pr->topic_alias_max) ? OK : MALFORMED;
    case MQTT_PROP_RECEIVE_MAX: return nonzero_u16(q, &pr->receive_max);
    /* Alias 0 is forbidden outright [MQTT-3.3.2-8]; the range check against
     * Topic Alias Maximum (0x94) needs connection state. */
    case MQTT_PROP_TOPIC_ALIAS: return nonzero_u16(q, &pr->topic_alias);
    case MQTT_PROP_CONTENT_TYPE: return get_str(q, &pr->content_type) ? OK : MALFORMED;
    case MQTT_PROP_ASSIGNED_CLIENT_ID: return get_str(q, &pr->assigned_client_id) ? OK : MALFORMED;
    case MQTT_PROP_AUTH_METHOD: return get_str(q, &pr->auth_method) ? OK : MALFORMED;
    case MQTT_PROP_RESPONSE_INFO: return get_str(q, &pr->response_info) ? OK : MALFORMED;
    case MQTT_PROP_SERVER_REFERENCE: return get_str(q, &pr->server_reference) ? OK : MALFORMED;
    case MQTT_PROP_REASON_STRING: return get_str(q, &pr->reason_string) ? OK : MALFORMED;
    case MQTT_PROP_CORRELATION_DATA: return get_bin(q, &pr->correlation_data) ? OK : MALFORMED;
    case MQTT_PROP_AUTH_DATA: return get_bin(q, &pr->auth_data) ? OK : MALFORMED;
    case MQTT_PROP_RESPONSE_TOPIC:
        if (!get_str(q, &pr->response_topic))
            return MALFORMED;
        /* A Response Topic is a Topic Name: no wildcards [MQTT-3.3.2-14]. */
        return topic_name_valid(pr->response_topic.ptr, pr->response_topic.len) ? OK : PROTO;
    case MQTT_PROP_SUBSCRIPTION_ID:
        if (!get_varint(q, &v))
            return MALFORMED;
        if (v == 0)
            return PROTO;
        if (pr->sub_id_count < 8)
            pr->sub_ids[pr->sub_id_count] = v;
        pr->sub_id_count++;
        return OK;
    case MQTT_PROP_USER_PROPERTY: {
        struct mqtt_bytes k, val;
        if (!get_str(q, &k) || !get_str(q, &val))
            return MALFORMED;
        if (!pr->user_props.ptr)
            pr->user_props.ptr = start;
        pr->user_props.len = (uint32_t)(q->p - pr->user_props.ptr);
        pr->user_prop_count++;
        return OK;
    }
    default:
        return MALFORMED;
    }
}

/* Property length + properties. Unknown ids are MALFORMED (the reader
 * cannot know their size); known ids that this packet may not carry, or
 * that repeat where only user properties (and subscription ids when multi
 * allows it) may, are PROTOCOL_ERROR. */
static uint8_t get_props(struct rd *r, uint64_t allowed, uint64_t multi, struct mqtt_props *pr)
{
    memset(pr, 0, sizeof *pr);
    uint32_t plen;
    if (!get_varint(r, &plen) || plen > left(r))
        return MALFORMED;
    struct rd q = {r->p, r->p + plen};
    r->p += plen;
    multi |= P_USER;
    while (q.p < q.end) {
        const uint8_t *start = q.p;
        uint8_t id = *q.p++;
        if (id > MQTT_PROP_SHARED_SUB_AVAILABLE)
            return MALFORMED;
        uint64_t bit = BIT(id);
        if (!(allowed & bit)) {
            /* Only ids defined by the spec are "not allowed"; holes in the
             * id space are unknown ids. */
            uint64_t known = P_CONNECT | P_CONNACK | P_WILL | P_PUBLISH | P_SUBSCRIBE |
                             P_DISCONNECT | P_AUTH;
            return (known & bit) ? PROTO : MALFORMED;
        }
        if ((pr->present & bit) && !(multi & bit))
            return PROTO;
        pr->present |= bit;
        uint8_t rc = prop_value(&q, id, pr, start);
        if (rc)
            return rc;
    }
    return OK;
}

/* 5.0: properties only when the packet still has bytes for them. */
static uint8_t opt_props(struct rd *r, uint64_t allowed, struct mqtt_props *pr)
{
    if (!left(r)) {
        memset(pr, 0, sizeof *pr);
        return OK;
    }
    return get_props(r, allowed, 0, pr);
}

static inline bool auth_data_without_method(const struct mqtt_props *p)
{
    return mqtt_props_has(p, MQTT_PROP_AUTH_DATA) && !mqtt_props_has(p, MQTT_PROP_AUTH_METHOD);
}

/* ---- packets ---------------------------------------------------------- */

struct ctx {
    uint8_t version;
    enum mqtt_role role;
    bool v5;
};

static uint8_t topic_name_rc(const struct mqtt_bytes *t)
{
    if (topic_name_valid(t->ptr, t->len))
        return OK;
    /* Rescan only on failure: bad UTF-8 is malformed, wildcards are not. */
    return mqtt_utf8_valid(t->ptr, t->len) ? MQTT_RC_TOPIC_NAME_INVALID : MALFORMED;
}

static uint8_t connect_header(struct rd *r, struct mqtt_connect *c)
{
    struct mqtt_bytes name;
    uint8_t level;
    if (!get_bin(r, &name) || !get_u8(r, &level))
        return MALFORMED;
    c->version = level;
    if (name.len == 4 && memcmp(name.ptr, "MQTT", 4) == 0 &&
        (level == MQTT_V311 || level == MQTT_V5))
        return OK;
    if (name.len == 6 && memcmp(name.ptr, "MQIsdp", 6) == 0 && level == MQTT_V31)
        return OK;
    return MQTT_RC_UNSUPPORTED_VERSION;
}

static uint8_t connect_will(struct rd *r, struct mqtt_connect *c, uint8_t *soft)
{
    bool v5 = c->version == MQTT_V5;
    if (v5) {
        uint8_t rc = get_props(r, P_WILL, 0, &c->will_props);
        if (rc)
            return rc;
    }
    if (!get_bin(r, &c->will_topic) || !get_bin(r, &c->will_payload))
        return MALFORMED;
    uint8_t rc = topic_name_rc(&c->will_topic);
    if (rc == MALFORMED)
        return rc;
    if (!*soft)
        *soft = rc;
    if (!*soft && v5 && c->will_props.payload_format == 1 &&
        !payload_utf8(c->will_payload.ptr, c->will_payload.len))
        *soft = MQTT_RC_PAYLOAD_FORMAT_INVALID;
    return OK;
}

static uint8_t decode_connect(struct rd *r, const struct ctx *x, struct mqtt_packet *out)
{
    struct mqtt_connect *c = &out->u.connect;
    memset(c, 0, sizeof *c);
    uint8_t rc = connect_header(r, c);
    if (rc)
        return rc;
    bool v5 = c->version == MQTT_V5;
    uint8_t flags;
    if (!get_u8(r, &flags) || !get_u16(r, &c->keepalive))
        return MALFORMED;
    c->clean_start = flags & 0x02;
    c->will_flag = flags & 0x04;
    c->will_qos = (flags >> 3) & 3;
    c->will_retain = flags & 0x20;
    c->has_password = flags & 0x40;
    c->has_username = flags & 0x80;
    if ((flags & 0x01) || c->will_qos == 3)
        return MALFORMED;
    if (!c->will_flag && (c->will_qos || c->will_retain))
        return MALFORMED;
    /* 3.x requires a user name with a password [MQTT-3.1.2-22]; 5.0 lets
     * the password carry a credential on its own. */
    if (!v5 && c->has_password && !c->has_username)
        return MALFORMED;
    if (v5) {
        if ((rc = get_props(r, P_CONNECT, 0, &c->props)))
            return rc;
        if (auth_data_without_method(&c->props))
            return PROTO;
    }
    /* The client id is only checked as UTF-8: whether an empty or long id
     * is acceptable is the broker's policy. */
    if (!get_str(r, &c->client_id))
        return MALFORMED;
    uint8_t soft = OK;
    if (c->will_flag && (rc = connect_will(r, c, &soft)))
        return rc;
    if (c->has_username && !get_str(r, &c->username))
        return MALFORMED;
    if (c->has_password && !get_bin(r, &c->password))
        return MALFORMED;
    if (left(r))
        return MALFORMED;
    return soft;
}

static uint8_t decode_connack(struct rd *r, const struct ctx *x, struct mqtt_packet *out)
{
    struct mqtt_connack *c = &out->u.connack;
    memset(c, 0, sizeof *c);
    uint8_t flags;
    if (!get_u8(r, &flags) || !get_u8(r, &c->code))
        return MALFORMED;
    if (x->version == MQTT_V31) {
        /* 3.1: the first byte is reserved and unused. */
        return left(r) || c->code > MQTT3_REFUSED_NOT_AUTHORIZED ? MALFORMED : OK;
    }
    if (flags & 0xFE)
        return MALFORMED;
    c->session_present = flags & 1;
    if (!x->v5) {
        if (left(r) || c->code > MQTT3_REFUSED_NOT_AUTHORIZED)
            return MALFORMED;
        /* [MQTT-3.2.2-4]: Session Present must be 0 with a refusal. */
        return c->session_present && c->code ? PROTO : OK;
    }
    if (!(rc_kinds[c->code] & K_CONNACK))
        return PROTO;
    uint8_t rc = get_props(r, P_CONNACK, 0, &c->props);
    if (rc)
        return rc;
    if (left(r))
        return MALFORMED;
    /* [MQTT-3.2.2-6]: Session Present must be 0 with a failure code. */
    if (c->session_present && c->code)
        return PROTO;
    return auth_data_without_method(&c->props) ? PROTO : OK;
}

static uint8_t decode_publish(struct rd *r, uint8_t flags, const struct ctx *x,
                              struct mqtt_packet *out)
{
    struct mqtt_publish *p = &out->u.publish;
    p->qos = (flags >> 1) & 3;
    p->dup = flags & 0x08;
    p->retain = flags & 0x01;
    p->packet_id = 0;
    if (!get_bin(r, &p->topic))
        return MALFORMED;
    uint8_t soft = OK;
    if (p->topic.len) {
        soft = topic_name_rc(&p->topic);
        if (soft == MALFORMED)
            return soft;
    }
    if (p->qos && !get_u16(r, &p->packet_id))
        return MALFORMED;
    if (x->v5) {
        /* Subscription ids travel server -> client only, possibly several. */
        uint64_t sub = x->role == MQTT_ROLE_CLIENT ? BIT(MQTT_PROP_SUBSCRIPTION_ID) : 0;
        uint8_t rc = get_props(r, P_PUBLISH | sub, sub, &p->props);
        if (rc)
            return rc;
    } else {
        memset(&p->props, 0, sizeof p->props);
    }
    p->payload.ptr = r->p;
    p->payload.len = (uint32_t)left(r);
    r->p = r->end;
    if (p->qos && !p->packet_id)
        return PROTO;
    /* An empty topic name stands for a Topic Alias (5.0 only). */
    if (!p->topic.len && !mqtt_props_has(&p->props, MQTT_PROP_TOPIC_ALIAS))
        return PROTO;
    if (soft)
        return soft;
    if (p->props.payload_format == 1 && !payload_utf8(p->payload.ptr, p->payload.len))
        return MQTT_RC_PAYLOAD_FORMAT_INVALID;
    return OK;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP. 5.0 allows three lengths: 2 (success,
 * no properties), 3 (reason code, no properties), more (both). */
static uint8_t decode_ack(struct rd *r, uint8_t type, const struct ctx *x,
                          struct mqtt_packet *out)
{
    struct mqtt_ack *a = &out->u.ack;
    a->reason = 0;
    if (!get_u16(r, &a->packet_id))
        return MALFORMED;
    if (!x->v5) {
        memset(&a->props, 0, sizeof a->props);
        if (left(r))
            return MALFORMED;
        return a->packet_id ? OK : PROTO;
    }
    if (left(r) && !get_u8(r, &a->reason))
        return MALFORMED;
    uint8_t rc = opt_props(r, P_REASON, &a->props);
    if (rc)
        return rc;
    if (left(r))
        return MALFORMED;
    if (!a->packet_id)
        return PROTO;
    uint8_t kind = type == MQTT_PUBACK || type == MQTT_PUBREC ? K_PUBACK : K_PUBREL;
    return rc_kinds[a->reason] & kind ? OK : PROTO;
}

/* SUBSCRIBE and UNSUBSCRIBE. A filter that is well-formed UTF-8 but not a
 * valid filter (misplaced wildcard, empty, bad $share) is not a decode
 * error: 5.0 answers it per filter with SUBACK/UNSUBACK 0x8F, so the broker
 * runs topic_filter_valid() on each filter. The same goes for No Local on a
 * $share/ filter, a Protocol Error by [MQTT-3.8.3-4] that only the broker
 * can report with the right context. */
static uint8_t sub_options(uint8_t o, bool v5)
{
    if (!v5)
        return (o & 0xFC) || (o & 3) == 3 ? MALFORMED : OK;
    if (o & 0xC0)
        return MALFORMED; /* reserved bits [MQTT-3.8.3-5] */
    if ((o & 3) == 3 || ((o >> 4) & 3) == 3)
        return PROTO;
    return OK;
}

static uint8_t decode_subscribe(struct rd *r, bool sub, const struct ctx *x,
                                struct mqtt_packet *out)
{
    struct mqtt_subscribe *s = &out->u.subscribe;
    s->count = 0;
    if (!get_u16(r, &s->packet_id))
        return MALFORMED;
    if (x->v5) {
        uint8_t rc = get_props(r, sub ? P_SUBSCRIBE : P_USER, 0, &s->props);
        if (rc)
            return rc;
    } else {
        memset(&s->props, 0, sizeof s->props);
    }
    s->list.ptr = r->p;
    s->list.len = (uint32_t)left(r);
    uint8_t soft = OK;
    while (left(r)) {
        struct mqtt_bytes f;
        uint8_t o;
        if (!get_str(r, &f))
            return MALFORMED;
        if (sub) {
            if (!get_u8(r, &o))
                return MALFORMED;
            uint8_t rc = sub_options(o, x->v5);
            if (rc == MALFORMED)
                return rc;
            if (!soft)
                soft = rc;
        }
        s->count++;
    }
    if (!s->packet_id || !s->count)
        return PROTO;
    return soft;
}

/* SUBACK and UNSUBACK (client side). 3.x UNSUBACK is just a packet id. */
static uint8_t decode_suback(struct rd *r, bool unsub, const struct ctx *x,
                             struct mqtt_packet *out)
{
    struct mqtt_suback *s = &out->u.suback;
    s->count = 0;
    s->codes = NULL;
    memset(&s->props, 0, sizeof s->props);
    if (!get_u16(r, &s->packet_id))
        return MALFORMED;
    if (x->v5) {
        uint8_t rc = get_props(r, P_REASON, 0, &s->props);
        if (rc)
            return rc;
    } else if (unsub) {
        if (left(r))
            return MALFORMED;
        return s->packet_id ? OK : PROTO;
    }
    s->codes = r->p;
    s->count = (uint32_t)left(r);
    r->p = r->end;
    if (!s->packet_id || !s->count)
        return PROTO;
    uint8_t kind = unsub ? K_UNSUBACK : K_SUBACK;
    for (uint32_t i = 0; i < s->count; i++) {
        uint8_t c = s->codes[i];
        bool ok = x->v5 ? (rc_kinds[c] & kind) != 0 : (c <= 2 || c == 0x80);
        if (!ok)
            return x->v5 ? PROTO : MALFORMED;
    }
    return OK;
}

/* DISCONNECT and AUTH. Remaining length 0 means reason 0, no properties. */
static uint8_t decode_disconnect(struct rd *r, bool auth, const struct ctx *x,
                                 struct mqtt_packet *out)
{
    struct mqtt_disconnect *d = &out->u.disconnect;
    memset(d, 0, sizeof *d);
    if (!x->v5)
        return left(r) ? MALFORMED : OK;
    if (!left(r))
        return OK;
    get_u8(r, &d->reason);
    uint8_t rc;
    if (auth) {
        /* AUTH has no "reason code only" form; when present, the
         * properties must name the method (section 3.15.2.2.2). */
        if (!left(r))
            return MALFORMED;
        rc = get_props(r, P_AUTH, 0, &d->props);
    } else {
        rc = opt_props(r, P_DISCONNECT, &d->props);
    }
    if (rc)
        return rc;
    if (left(r))
        return MALFORMED;
    if (!(rc_kinds[d->reason] & (auth ? K_AUTH : K_DISCONNECT)))
        return PROTO;
    if (auth && (!mqtt_props_has(&d->props, MQTT_PROP_AUTH_METHOD) ||
                 auth_data_without_method(&d->props)))
        return PROTO;
    /* The server must not send a Session Expiry Interval [MQTT-3.14.2-2]. */
    if (!auth && x->role == MQTT_ROLE_CLIENT &&
        mqtt_props_has(&d->props, MQTT_PROP_SESSION_EXPIRY))
        return PROTO;
    return OK;
}

/* ---- fixed header and dispatch ---------------------------------------- */

#define T(t) (1u << (t))
#define FROM_CLIENT                                                                  \
    (T(MQTT_CONNECT) | T(MQTT_PUBLISH) | T(MQTT_PUBACK) | T(MQTT_PUBREC) |           \
     T(MQTT_PUBREL) | T(MQTT_PUBCOMP) | T(MQTT_SUBSCRIBE) | T(MQTT_UNSUBSCRIBE) |    \
     T(MQTT_PINGREQ) | T(MQTT_DISCONNECT) | T(MQTT_AUTH))
#define FROM_SERVER                                                                  \
    (T(MQTT_CONNACK) | T(MQTT_PUBLISH) | T(MQTT_PUBACK) | T(MQTT_PUBREC) |           \
     T(MQTT_PUBREL) | T(MQTT_PUBCOMP) | T(MQTT_SUBACK) | T(MQTT_UNSUBACK) |          \
     T(MQTT_PINGRESP) | T(MQTT_DISCONNECT) | T(MQTT_AUTH))

/* Everything the first byte alone can tell: reserved types, flag bits, and
 * whether this side may receive the type at all. */
static uint8_t check_first_byte(uint8_t type, uint8_t flags, const struct ctx *x)
{
    if (type == 0 || (type == MQTT_AUTH && !x->v5))
        return MALFORMED;
    if (type == MQTT_PUBLISH) {
        uint8_t qos = (flags >> 1) & 3;
        /* DUP at QoS 0 [MQTT-3.3.1-2]: rejected in every version. */
        if (qos == 3 || (qos == 0 && (flags & 0x08)))
            return MALFORMED;
    } else if (flags != (type == MQTT_PUBREL || type == MQTT_SUBSCRIBE ||
                                 type == MQTT_UNSUBSCRIBE ? 2 : 0)) {
        return MALFORMED;
    }
    uint32_t allowed = x->role == MQTT_ROLE_SERVER ? FROM_CLIENT : FROM_SERVER;
    /* 3.x servers never send DISCONNECT. */
    if (!x->v5 && x->role == MQTT_ROLE_CLIENT)
        allowed &= ~T(MQTT_DISCONNECT);
    if (!(allowed & T(type)))
        return x->v5 ? PROTO : MALFORMED;
    return OK;
}

static uint8_t decode_body(struct rd *r, uint8_t type, uint8_t flags, const struct ctx *x,
                           struct mqtt_packet *out)
{
    switch (type) {
    case MQTT_CONNECT: return decode_connect(r, x, out);
    case MQTT_CONNACK: return decode_connack(r, x, out);
    case MQTT_PUBLISH: return decode_publish(r, flags, x, out);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: return decode_ack(r, type, x, out);
    case MQTT_SUBSCRIBE: return decode_subscribe(r, true, x, out);
    case MQTT_UNSUBSCRIBE: return decode_subscribe(r, false, x, out);
    case MQTT_SUBACK: return decode_suback(r, false, x, out);
    case MQTT_UNSUBACK: return decode_suback(r, true, x, out);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP: return left(r) ? MALFORMED : OK;
    case MQTT_DISCONNECT: return decode_disconnect(r, false, x, out);
    case MQTT_AUTH: return decode_disconnect(r, true, x, out);
    default: return MALFORMED;
    }
}

/* 3.x has no reason codes: the only outcomes a 3.x peer can be told about
 * are a refused CONNECT (version) and a closed connection. */
static uint8_t error_code(uint8_t rc, bool v5)
{
    if (v5 || rc == MQTT_RC_UNSUPPORTED_VERSION || rc == MQTT_RC_PACKET_TOO_LARGE)
        return rc;
    return MALFORMED;
}

enum mqtt_decode_status mqtt_decode(const uint8_t *buf, size_t len,
                                    const struct mqtt_decoder_opts *opts,
                                    struct mqtt_packet *out, size_t *consumed,
                                    uint8_t *reason)
{
    *consumed = 0;
    *reason = MQTT_RC_SUCCESS;
    if (len == 0)
        return MQTT_DECODE_MORE;
    struct ctx x = {opts->version, opts->role, opts->version == MQTT_V5};
    uint8_t type = buf[0] >> 4, flags = buf[0] & 0x0F;
    uint8_t rc = check_first_byte(type, flags, &x);
    if (rc) {
        *reason = error_code(rc, x.v5);
        return MQTT_DECODE_ERROR;
    }
    uint32_t rem;
    int n = mqtt_varint_decode(buf + 1, len - 1, &rem);
    if (n == 0)
        return MQTT_DECODE_MORE;
    if (n < 0) {
        *reason = MALFORMED;
        return MQTT_DECODE_ERROR;
    }
    uint64_t total = 1 + (uint64_t)n + rem;
    uint32_t max = opts->max_packet_size ? opts->max_packet_size : MQTT_MAX_PACKET;
    if (total > max) {
        *reason = MQTT_RC_PACKET_TOO_LARGE;
        return MQTT_DECODE_ERROR;
    }
    if (len < total)
        return MQTT_DECODE_MORE;
    out->type = type;
    out->flags = flags;
    struct rd r = {buf + 1 + n, buf + total};
    rc = decode_body(&r, type, flags, &x, out);
    if (rc) {
        /* A CONNECT carries its own version; others use the negotiated one. */
        bool v5 = type == MQTT_CONNECT ? out->u.connect.version == MQTT_V5 : x.v5;
        *reason = error_code(rc, v5);
        return MQTT_DECODE_ERROR;
    }
    *consumed = (size_t)total;
    return MQTT_DECODE_OK;
}
