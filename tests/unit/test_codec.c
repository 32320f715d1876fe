/* test_codec.c - unit tests for the MQTT packet codec (src/mqtt/codec.c,
 * src/mqtt/decode.c): round trips of every packet type in every version,
 * byte-exact packets from the specifications, every rejection rule with its
 * reason code, incremental decoding and variable byte integers. */
#include <stdint.h>
#include <stdlib.h>

#include "mqtt/codec.h"
#include "mqtt/topic.h"
#include "test.h"

#define SRV MQTT_ROLE_SERVER
#define CLI MQTT_ROLE_CLIENT
#define ST_OK MQTT_DECODE_OK
#define ST_MORE MQTT_DECODE_MORE
#define ST_ERR MQTT_DECODE_ERROR

#define BS(s) ((struct mqtt_bytes){(const uint8_t *)(s), (uint32_t)(sizeof(s) - 1)})

/* Decode a literal packet and expect an error with reason rc. */
#define DECODE_ERR(role, ver, rc, ...)                                          \
    do {                                                                        \
        static const uint8_t pk_[] = {__VA_ARGS__};                             \
        struct mqtt_packet p_;                                                  \
        size_t c_ = 99;                                                         \
        uint8_t r_ = 0;                                                         \
        struct mqtt_decoder_opts o_ = {role, ver, 0};                           \
        if (sizeof pk_ > 1 && !(pk_[1] & 0x80))                                 \
            CHECK_EQ(pk_[1], sizeof pk_ - 2); /* the literal is one packet */   \
        CHECK_EQ(mqtt_decode(pk_, sizeof pk_, &o_, &p_, &c_, &r_), ST_ERR);     \
        CHECK_EQ(r_, rc);                                                       \
        CHECK_EQ(c_, 0);                                                        \
    } while (0)

/* Decode a literal packet into *(pp) and expect success. */
#define DECODE_OK(role, ver, pp, ...)                                           \
    do {                                                                        \
        static const uint8_t pk_[] = {__VA_ARGS__};                             \
        size_t c_ = 0;                                                          \
        uint8_t r_ = 0xEE;                                                      \
        struct mqtt_decoder_opts o_ = {role, ver, 0};                           \
        if (!(pk_[1] & 0x80))                                                   \
            CHECK_EQ(pk_[1], sizeof pk_ - 2); /* the literal is one packet */   \
        CHECK_EQ(mqtt_decode(pk_, sizeof pk_, &o_, pp, &c_, &r_), ST_OK);       \
        CHECK_EQ(r_, 0);                                                        \
        CHECK_EQ(c_, sizeof pk_);                                               \
    } while (0)

/* ---- helpers ---------------------------------------------------------- */

static bool bytes_eq(struct mqtt_bytes a, struct mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool bytes_is(struct mqtt_bytes a, const char *s)
{
    size_t n = strlen(s);
    return a.len == n && (n == 0 || memcmp(a.ptr, s, n) == 0);
}

static bool user_props_eq(const struct mqtt_props *a, const struct mqtt_props *b)
{
    if (a->user_prop_count != b->user_prop_count)
        return false;
    uint32_t pa = 0, pb = 0, n = 0;
    struct mqtt_bytes ka, va, kb, vb;
    for (;;) {
        bool ha = mqtt_user_props_next(&a->user_props, &pa, &ka, &va);
        bool hb = mqtt_user_props_next(&b->user_props, &pb, &kb, &vb);
        if (ha != hb)
            return false;
        if (!ha)
            return n == a->user_prop_count;
        if (!bytes_eq(ka, kb) || !bytes_eq(va, vb))
            return false;
        n++;
    }
}

static bool props_eq(const struct mqtt_props *a, const struct mqtt_props *b)
{
    if (a->present != b->present)
        return false;
#define SCALAR(id, f)                                                           \
    if (mqtt_props_has(a, id) && a->f != b->f)                                  \
        return false;
#define BYTES(id, f)                                                            \
    if (mqtt_props_has(a, id) && !bytes_eq(a->f, b->f))                         \
        return false;
    SCALAR(MQTT_PROP_PAYLOAD_FORMAT, payload_format)
    SCALAR(MQTT_PROP_MESSAGE_EXPIRY, message_expiry)
    BYTES(MQTT_PROP_CONTENT_TYPE, content_type)
    BYTES(MQTT_PROP_RESPONSE_TOPIC, response_topic)
    BYTES(MQTT_PROP_CORRELATION_DATA, correlation_data)
    SCALAR(MQTT_PROP_SESSION_EXPIRY, session_expiry)
    BYTES(MQTT_PROP_ASSIGNED_CLIENT_ID, assigned_client_id)
    SCALAR(MQTT_PROP_SERVER_KEEPALIVE, server_keepalive)
    BYTES(MQTT_PROP_AUTH_METHOD, auth_method)
    BYTES(MQTT_PROP_AUTH_DATA, auth_data)
    SCALAR(MQTT_PROP_REQUEST_PROBLEM_INFO, request_problem_info)
    SCALAR(MQTT_PROP_WILL_DELAY, will_delay)
    SCALAR(MQTT_PROP_REQUEST_RESPONSE_INFO, request_response_info)
    BYTES(MQTT_PROP_RESPONSE_INFO, response_info)
    BYTES(MQTT_PROP_SERVER_REFERENCE, server_reference)
    BYTES(MQTT_PROP_REASON_STRING, reason_string)
    SCALAR(MQTT_PROP_RECEIVE_MAX, receive_max)
    SCALAR(MQTT_PROP_TOPIC_ALIAS_MAX, topic_alias_max)
    SCALAR(MQTT_PROP_TOPIC_ALIAS, topic_alias)
    SCALAR(MQTT_PROP_MAX_QOS, max_qos)
    SCALAR(MQTT_PROP_RETAIN_AVAILABLE, retain_available)
    SCALAR(MQTT_PROP_MAX_PACKET_SIZE, max_packet_size)
    SCALAR(MQTT_PROP_WILDCARD_SUB_AVAILABLE, wildcard_sub_available)
    SCALAR(MQTT_PROP_SUB_ID_AVAILABLE, sub_id_available)
    SCALAR(MQTT_PROP_SHARED_SUB_AVAILABLE, shared_sub_available)
#undef SCALAR
#undef BYTES
    if (mqtt_props_has(a, MQTT_PROP_SUBSCRIPTION_ID)) {
        if (a->sub_id_count != b->sub_id_count)
            return false;
        for (uint32_t i = 0; i < a->sub_id_count && i < 8; i++)
            if (a->sub_ids[i] != b->sub_ids[i])
                return false;
    }
    return user_props_eq(a, b);
}

#define B(id) ((uint64_t)1 << (id))
#define M_USER B(MQTT_PROP_USER_PROPERTY)
#define M_REASON (B(MQTT_PROP_REASON_STRING) | M_USER)
#define M_CONNECT                                                               \
    (B(0x11) | B(0x15) | B(0x16) | B(0x17) | B(0x19) | B(0x21) | B(0x22) | B(0x27) | M_USER)
#define M_CONNACK                                                               \
    (B(0x11) | B(0x12) | B(0x13) | B(0x15) | B(0x16) | B(0x1A) | B(0x1C) | B(0x1F) |     \
     B(0x21) | B(0x22) | B(0x24) | B(0x25) | B(0x27) | B(0x28) | B(0x29) | B(0x2A) | M_USER)
#define M_WILL (B(0x01) | B(0x02) | B(0x03) | B(0x08) | B(0x09) | B(0x18) | M_USER)
#define M_PUBLISH (B(0x01) | B(0x02) | B(0x03) | B(0x08) | B(0x09) | B(0x23) | M_USER)
#define M_DISCONNECT (B(0x11) | B(0x1C) | M_REASON)
#define M_AUTH (B(0x15) | B(0x16) | M_REASON)

static uint8_t user_buf[256];

/* Every property in mask, with distinctive values, and two user props. */
static void fill_props(struct mqtt_props *p, uint64_t mask)
{
    memset(p, 0, sizeof *p);
    p->present = mask & ~M_USER;
    p->payload_format = 1;
    p->message_expiry = 3600;
    p->content_type = BS("text/plain");
    p->response_topic = BS("resp/topic");
    p->correlation_data = BS("\x00\x01\xff");
    p->sub_ids[0] = 268435455;
    p->sub_id_count = 1;
    p->session_expiry = 0xFFFFFFFF;
    p->assigned_client_id = BS("auto-1");
    p->server_keepalive = 30;
    p->auth_method = BS("SCRAM-SHA-1");
    p->auth_data = BS("\x01\x02\x00");
    p->request_problem_info = 0;
    p->will_delay = 10;
    p->request_response_info = 1;
    p->response_info = BS("ri");
    p->server_reference = BS("other:1883");
    p->reason_string = BS("because");
    p->receive_max = 100;
    p->topic_alias_max = 10;
    p->topic_alias = 5;
    p->max_qos = 1;
    p->retain_available = 0;
    p->max_packet_size = 1u << 20;
    p->wildcard_sub_available = 1;
    p->sub_id_available = 0;
    p->shared_sub_available = 1;
    if (mask & M_USER) {
        size_t n = mqtt_user_prop_append(user_buf, sizeof user_buf, 0, "k1", 2, "v1", 2);
        n = mqtt_user_prop_append(user_buf, sizeof user_buf, n, "key two", 7, "v\xc3\xa4lue", 6);
        p->user_props.ptr = user_buf;
        p->user_props.len = (uint32_t)n;
        p->user_prop_count = 2;
        mqtt_props_set(p, MQTT_PROP_USER_PROPERTY);
    }
}

/* Encode, check the length agrees, decode it back (also one byte short of
 * every prefix, which must ask for more) and return the decoded packet. */
static bool roundtrip(const struct mqtt_packet *in, uint8_t ver, enum mqtt_role role,
                      struct mqtt_packet *out, uint8_t *buf, size_t cap)
{
    size_t n = mqtt_encode(in, ver, buf, cap);
    CHECK(n > 0);
    CHECK_EQ(n, mqtt_encoded_len(in, ver));
    if (!n)
        return false;
    struct mqtt_decoder_opts o = {role, ver, 0};
    size_t c = 0;
    uint8_t r = 0xEE;
    for (size_t k = 0; k < n; k++) {
        if (mqtt_decode(buf, k, &o, out, &c, &r) != ST_MORE) {
            CHECK(!"prefix did not ask for more");
            return false;
        }
    }
    int st = mqtt_decode(buf, n, &o, out, &c, &r);
    CHECK_EQ(st, ST_OK);
    CHECK_EQ(r, 0);
    CHECK_EQ(c, n);
    CHECK_EQ(out->type, in->type);
    return st == ST_OK;
}

/* Assemble fixed header + body into out. */
static size_t make_packet(uint8_t first, const uint8_t *body, size_t blen, uint8_t *out)
{
    out[0] = first;
    size_t h = 1 + mqtt_varint_encode((uint32_t)blen, out + 1, 4);
    memcpy(out + h, body, blen);
    return h + blen;
}

static int decode_buf(const uint8_t *b, size_t n, enum mqtt_role role, uint8_t ver,
                      struct mqtt_packet *p, uint8_t *reason)
{
    struct mqtt_decoder_opts o = {role, ver, 0};
    size_t c;
    return mqtt_decode(b, n, &o, p, &c, reason);
}

/* A 5.0 CONNECT (client id "c") whose CONNECT property block is props. */
static size_t connect5_with_props(const uint8_t *props, size_t plen, uint8_t *out)
{
    uint8_t body[512];
    size_t n = 0;
    static const uint8_t head[] = {0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60};
    memcpy(body, head, sizeof head);
    n = sizeof head;
    n += mqtt_varint_encode((uint32_t)plen, body + n, 4);
    memcpy(body + n, props, plen);
    n += plen;
    body[n++] = 0;
    body[n++] = 1;
    body[n++] = 'c';
    return make_packet(0x10, body, n, out);
}

/* A 5.0 QoS 0 PUBLISH to "t" with the given properties and payload. */
static size_t publish5_with_props(const uint8_t *props, size_t plen, const void *payload,
                                  size_t paylen, uint8_t *out)
{
    uint8_t body[512];
    size_t n = 0;
    body[n++] = 0;
    body[n++] = 1;
    body[n++] = 't';
    n += mqtt_varint_encode((uint32_t)plen, body + n, 4);
    memcpy(body + n, props, plen);
    n += plen;
    memcpy(body + n, payload, paylen);
    n += paylen;
    return make_packet(0x30, body, n, out);
}

#define CONNECT5_PROPS_ERR(rc, ...)                                             \
    do {                                                                        \
        static const uint8_t pr_[] = {__VA_ARGS__};                             \
        uint8_t b_[600];                                                        \
        struct mqtt_packet p_;                                                  \
        uint8_t r_ = 0;                                                         \
        size_t n_ = connect5_with_props(pr_, sizeof pr_, b_);                   \
        CHECK_EQ(decode_buf(b_, n_, SRV, 5, &p_, &r_), ST_ERR);                 \
        CHECK_EQ(r_, rc);                                                       \
    } while (0)

#define PUBLISH5_PROPS(role, st, rc, payload, ...)                              \
    do {                                                                        \
        static const uint8_t pr_[] = {__VA_ARGS__};                             \
        uint8_t b_[600];                                                        \
        struct mqtt_packet p_;                                                  \
        uint8_t r_ = 0;                                                         \
        size_t n_ = publish5_with_props(pr_, sizeof pr_, payload,               \
                                        sizeof(payload) - 1, b_);               \
        CHECK_EQ(decode_buf(b_, n_, role, 5, &p_, &r_), st);                    \
        CHECK_EQ(r_, rc);                                                       \
    } while (0)

/* ---- variable byte integers ------------------------------------------- */

TEST(varint_encode_boundaries)
{
    static const struct { uint32_t v; size_t n; uint8_t b[4]; } cases[] = {
        {0, 1, {0x00}},
        {127, 1, {0x7F}},
        {128, 2, {0x80, 0x01}},
        {16383, 2, {0xFF, 0x7F}},
        {16384, 3, {0x80, 0x80, 0x01}},
        {2097151, 3, {0xFF, 0xFF, 0x7F}},
        {2097152, 4, {0x80, 0x80, 0x80, 0x01}},
        {268435455, 4, {0xFF, 0xFF, 0xFF, 0x7F}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t out[4];
        CHECK_EQ(mqtt_varint_encode(cases[i].v, out, 4), cases[i].n);
        CHECK_MEM(out, cases[i].b, cases[i].n);
        CHECK_EQ(mqtt_varint_len(cases[i].v), cases[i].n);
        uint32_t v = 1;
        CHECK_EQ(mqtt_varint_decode(cases[i].b, cases[i].n, &v), (int)cases[i].n);
        CHECK_EQ(v, cases[i].v);
    }
}

TEST(varint_encode_rejects_too_large)
{
    uint8_t out[8];
    CHECK_EQ(mqtt_varint_encode(268435456u, out, sizeof out), 0);
    CHECK_EQ(mqtt_varint_encode(UINT32_MAX, out, sizeof out), 0);
}

TEST(varint_encode_rejects_small_cap)
{
    uint8_t out[4];
    CHECK_EQ(mqtt_varint_encode(128, out, 1), 0);
    CHECK_EQ(mqtt_varint_encode(2097152, out, 3), 0);
    CHECK_EQ(mqtt_varint_encode(0, out, 0), 0);
}

TEST(varint_decode_incomplete_needs_more)
{
    uint32_t v;
    static const uint8_t b[] = {0x80, 0x80, 0x80};
    CHECK_EQ(mqtt_varint_decode(b, 0, &v), 0);
    CHECK_EQ(mqtt_varint_decode(b, 1, &v), 0);
    CHECK_EQ(mqtt_varint_decode(b, 2, &v), 0);
    CHECK_EQ(mqtt_varint_decode(b, 3, &v), 0);
}

TEST(varint_decode_fifth_byte_is_malformed)
{
    uint32_t v;
    static const uint8_t b[] = {0xFF, 0xFF, 0xFF, 0xFF, 0x7F};
    CHECK_EQ(mqtt_varint_decode(b, 5, &v), -1);
    CHECK_EQ(mqtt_varint_decode(b, 4, &v), -1);
}

TEST(varint_decode_non_minimal_accepted)
{
    uint32_t v = 7;
    static const uint8_t b[] = {0x80, 0x00};
    CHECK_EQ(mqtt_varint_decode(b, 2, &v), 2);
    CHECK_EQ(v, 0);
}

/* ---- fixed header ------------------------------------------------------ */

TEST(decode_empty_buffer_needs_more)
{
    struct mqtt_packet p;
    uint8_t r = 0xEE;
    size_t c = 5;
    struct mqtt_decoder_opts o = {SRV, 5, 0};
    CHECK_EQ(mqtt_decode(NULL, 0, &o, &p, &c, &r), ST_MORE);
    CHECK_EQ(c, 0);
}

TEST(decode_incomplete_remaining_length_needs_more)
{
    static const uint8_t b[] = {0x30, 0xFF, 0xFF, 0xFF};
    struct mqtt_packet p;
    uint8_t r;
    for (size_t k = 1; k <= sizeof b; k++)
        CHECK_EQ(decode_buf(b, k, SRV, 5, &p, &r), ST_MORE);
}

TEST(decode_remaining_length_fifth_byte_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x30, 0xFF, 0xFF, 0xFF, 0x80);
}

TEST(decode_packet_type_zero_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x00, 0x00);
    DECODE_ERR(CLI, 4, MQTT_RC_MALFORMED, 0x00, 0x00);
}

TEST(decode_auth_type_in_v311_malformed)
{
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0xF0, 0x00);
    DECODE_ERR(CLI, 3, MQTT_RC_MALFORMED, 0xF0, 0x00);
}

TEST(decode_reserved_flags_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0xC1, 0x00);       /* PINGREQ */
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x42, 0x02, 0, 1); /* PUBACK */
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0xE8, 0x00);       /* DISCONNECT */
    DECODE_ERR(CLI, 5, MQTT_RC_MALFORMED, 0x21, 0x03, 0, 0, 0); /* CONNACK */
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x11, 0x00);       /* CONNECT */
}

TEST(decode_pubrel_flags_must_be_0010)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x60, 0x02, 0, 1);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x63, 0x02, 0, 1);
    struct mqtt_packet p;
    DECODE_OK(SRV, 4, &p, 0x62, 0x02, 0, 1);
    CHECK_EQ(p.type, MQTT_PUBREL);
}

TEST(decode_subscribe_flags_must_be_0010)
{
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x80, 0x06, 0, 1, 0, 1, 'a', 0);
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x8A, 0x07, 0, 1, 0, 0, 1, 'a', 0);
}

TEST(decode_unsubscribe_flags_must_be_0010)
{
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0xA0, 0x05, 0, 1, 0, 1, 'a');
}

TEST(decode_publish_qos3_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x36, 0x06, 0, 1, 't', 0, 1, 0);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x36, 0x05, 0, 1, 't', 0, 1);
}

TEST(decode_publish_dup_at_qos0_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x38, 0x04, 0, 1, 't', 0);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x38, 0x03, 0, 1, 't');
    DECODE_ERR(CLI, 3, MQTT_RC_MALFORMED, 0x38, 0x03, 0, 1, 't');
}

TEST(decode_server_rejects_server_packets)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x20, 0x03, 0, 0, 0);  /* CONNACK */
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x90, 0x04, 0, 1, 0, 0); /* SUBACK */
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0xB0, 0x04, 0, 1, 0, 0); /* UNSUBACK */
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0xD0, 0x00);             /* PINGRESP */
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x20, 0x02, 0, 0);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0xD0, 0x00);
}

TEST(decode_client_rejects_client_packets)
{
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0xC0, 0x00); /* PINGREQ */
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0);
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0xA2, 0x06, 0, 1, 0, 0, 1, 'a');
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x10, 0x00);
    DECODE_ERR(CLI, 4, MQTT_RC_MALFORMED, 0xC0, 0x00);
}

TEST(decode_client_v311_rejects_disconnect)
{
    DECODE_ERR(CLI, 4, MQTT_RC_MALFORMED, 0xE0, 0x00);
    struct mqtt_packet p;
    DECODE_OK(CLI, 5, &p, 0xE0, 0x00);
    DECODE_OK(SRV, 4, &p, 0xE0, 0x00);
}

TEST(decode_packet_too_large_before_body)
{
    static const uint8_t b[] = {0x30, 0x64}; /* 102-byte packet, body missing */
    struct mqtt_packet p;
    struct mqtt_decoder_opts o = {SRV, 5, 64};
    size_t c;
    uint8_t r = 0;
    CHECK_EQ(mqtt_decode(b, sizeof b, &o, &p, &c, &r), ST_ERR);
    CHECK_EQ(r, MQTT_RC_PACKET_TOO_LARGE);
    o.version = 4;
    CHECK_EQ(mqtt_decode(b, sizeof b, &o, &p, &c, &r), ST_ERR);
    CHECK_EQ(r, MQTT_RC_PACKET_TOO_LARGE);
}

TEST(decode_packet_exactly_max_size_ok)
{
    static const uint8_t b[] = {0x30, 0x05, 0, 1, 't', 'h', 'i'}; /* 7 bytes */
    struct mqtt_packet p;
    struct mqtt_decoder_opts o = {SRV, 4, 7};
    size_t c;
    uint8_t r;
    CHECK_EQ(mqtt_decode(b, sizeof b, &o, &p, &c, &r), ST_OK);
    o.max_packet_size = 6;
    CHECK_EQ(mqtt_decode(b, sizeof b, &o, &p, &c, &r), ST_ERR);
    CHECK_EQ(r, MQTT_RC_PACKET_TOO_LARGE);
}

TEST(decode_default_max_allows_largest_packet)
{
    static const uint8_t b[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0, 1};
    struct mqtt_packet p;
    uint8_t r;
    CHECK_EQ(decode_buf(b, sizeof b, SRV, 5, &p, &r), ST_MORE);
}

TEST(decode_two_packets_back_to_back)
{
    static const uint8_t b[] = {0xC0, 0x00, 0x30, 0x03, 0, 1, 'x', 0xE0};
    struct mqtt_packet p;
    struct mqtt_decoder_opts o = {SRV, 4, 0};
    size_t c, off = 0;
    uint8_t r;
    CHECK_EQ(mqtt_decode(b, sizeof b, &o, &p, &c, &r), ST_OK);
    CHECK_EQ(p.type, MQTT_PINGREQ);
    CHECK_EQ(c, 2);
    off += c;
    CHECK_EQ(mqtt_decode(b + off, sizeof b - off, &o, &p, &c, &r), ST_OK);
    CHECK_EQ(p.type, MQTT_PUBLISH);
    CHECK(bytes_is(p.u.publish.topic, "x"));
    CHECK_EQ(p.u.publish.payload.len, 0);
    off += c;
    CHECK_EQ(mqtt_decode(b + off, sizeof b - off, &o, &p, &c, &r), ST_MORE);
}

TEST(decode_incremental_one_byte_at_a_time)
{
    struct mqtt_packet in = {.type = MQTT_PUBLISH}, out;
    in.u.publish.qos = 2;
    in.u.publish.packet_id = 77;
    in.u.publish.topic = BS("sensors/1/temp");
    in.u.publish.payload = BS("21.5");
    fill_props(&in.u.publish.props, M_PUBLISH);
    uint8_t buf[512];
    size_t n = mqtt_encode(&in, 5, buf, sizeof buf);
    CHECK(n > 20);
    /* Feed into a growing buffer as a socket would. */
    uint8_t acc[512];
    struct mqtt_decoder_opts o = {SRV, 5, 0};
    size_t c = 0;
    uint8_t r;
    int st = ST_MORE;
    size_t fed = 0;
    while (fed < n) {
        acc[fed] = buf[fed];
        fed++;
        st = mqtt_decode(acc, fed, &o, &out, &c, &r);
        if (fed < n)
            CHECK_EQ(st, ST_MORE);
    }
    CHECK_EQ(st, ST_OK);
    CHECK_EQ(c, n);
    CHECK(bytes_is(out.u.publish.payload, "21.5"));
}

/* ---- CONNECT ----------------------------------------------------------- */

TEST(connect_v311_spec_bytes)
{
    /* CONNECT, MQTT level 4, clean session, keepalive 60, client id "abc". */
    static const uint8_t want[] = {0x10, 0x0F, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60,
                                   0, 3, 'a', 'b', 'c'};
    struct mqtt_packet p = {.type = MQTT_CONNECT};
    p.u.connect.clean_start = true;
    p.u.connect.keepalive = 60;
    p.u.connect.client_id = BS("abc");
    uint8_t buf[64];
    CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), sizeof want);
    CHECK_MEM(buf, want, sizeof want);
    struct mqtt_packet d;
    DECODE_OK(SRV, 0, &d, 0x10, 0x0F, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 3, 'a',
              'b', 'c');
    CHECK_EQ(d.u.connect.version, 4);
    CHECK(d.u.connect.clean_start);
    CHECK(!d.u.connect.will_flag);
    CHECK_EQ(d.u.connect.keepalive, 60);
    CHECK(bytes_is(d.u.connect.client_id, "abc"));
}

TEST(connect_v31_spec_bytes)
{
    static const uint8_t want[] = {0x10, 0x11, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x02,
                                   0, 10, 0, 3, 'a', 'b', 'c'};
    struct mqtt_packet p = {.type = MQTT_CONNECT};
    p.u.connect.clean_start = true;
    p.u.connect.keepalive = 10;
    p.u.connect.client_id = BS("abc");
    uint8_t buf[64];
    CHECK_EQ(mqtt_encode(&p, 3, buf, sizeof buf), sizeof want);
    CHECK_MEM(buf, want, sizeof want);
    struct mqtt_packet d;
    uint8_t r;
    CHECK_EQ(decode_buf(want, sizeof want, SRV, 5, &d, &r), ST_OK);
    CHECK_EQ(d.u.connect.version, 3);
}

static void check_connect_roundtrip(uint8_t ver)
{
    struct mqtt_packet in = {.type = MQTT_CONNECT}, out;
    struct mqtt_connect *c = &in.u.connect;
    c->version = ver;
    c->clean_start = false;
    c->will_flag = true;
    c->will_qos = 2;
    c->will_retain = true;
    c->has_username = c->has_password = true;
    c->keepalive = 0xFFFF;
    c->client_id = BS("client-\xc3\xa9");
    c->will_topic = BS("last/will");
    c->will_payload = BS("gone");
    c->username = BS("user");
    c->password = BS("\xff\x00pw");
    if (ver == 5) {
        fill_props(&c->props, M_CONNECT);
        fill_props(&c->will_props, M_WILL);
    }
    uint8_t buf[1024];
    if (!roundtrip(&in, ver, SRV, &out, buf, sizeof buf))
        return;
    struct mqtt_connect *d = &out.u.connect;
    CHECK_EQ(d->version, ver);
    CHECK(!d->clean_start);
    CHECK(d->will_flag);
    CHECK_EQ(d->will_qos, 2);
    CHECK(d->will_retain);
    CHECK(d->has_username);
    CHECK(d->has_password);
    CHECK_EQ(d->keepalive, 0xFFFF);
    CHECK(bytes_eq(d->client_id, c->client_id));
    CHECK(bytes_eq(d->will_topic, c->will_topic));
    CHECK(bytes_eq(d->will_payload, c->will_payload));
    CHECK(bytes_eq(d->username, c->username));
    CHECK(bytes_eq(d->password, c->password));
    CHECK(props_eq(&d->props, &c->props));
    CHECK(props_eq(&d->will_props, &c->will_props));
}

TEST(connect_roundtrip_v31) { check_connect_roundtrip(3); }
TEST(connect_roundtrip_v311) { check_connect_roundtrip(4); }
TEST(connect_roundtrip_v5_all_properties) { check_connect_roundtrip(5); }

TEST(connect_minimal_v5_no_props)
{
    struct mqtt_packet p;
    DECODE_OK(SRV, 0, &p, 0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 0, 0, 0, 0);
    CHECK_EQ(p.u.connect.version, 5);
    CHECK_EQ(p.u.connect.props.present, 0);
    CHECK_EQ(p.u.connect.client_id.len, 0); /* empty id: broker policy */
}

TEST(connect_unknown_level_unsupported_version)
{
    struct mqtt_packet p;
    uint8_t r;
    static const uint8_t l6[] = {0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 6, 0x02, 0, 0, 0, 0};
    CHECK_EQ(decode_buf(l6, sizeof l6, SRV, 0, &p, &r), ST_ERR);
    CHECK_EQ(r, MQTT_RC_UNSUPPORTED_VERSION);
    CHECK_EQ(p.type, MQTT_CONNECT);
    CHECK_EQ(p.u.connect.version, 6);
}

TEST(connect_mqtt_name_with_level3_unsupported)
{
    DECODE_ERR(SRV, 0, MQTT_RC_UNSUPPORTED_VERSION, 0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 3,
               0x02, 0, 0, 0, 0);
}

TEST(connect_mqisdp_with_level4_unsupported)
{
    DECODE_ERR(SRV, 0, MQTT_RC_UNSUPPORTED_VERSION, 0x10, 0x0E, 0, 6, 'M', 'Q', 'I', 's', 'd',
               'p', 4, 0x02, 0, 0, 0, 0);
}

TEST(connect_wrong_protocol_name_unsupported)
{
    DECODE_ERR(SRV, 0, MQTT_RC_UNSUPPORTED_VERSION, 0x10, 0x0C, 0, 4, 'm', 'q', 't', 't', 4,
               0x02, 0, 0, 0, 0);
    DECODE_ERR(SRV, 0, MQTT_RC_UNSUPPORTED_VERSION, 0x10, 0x0B, 0, 3, 'M', 'Q', 'T', 4, 0x02,
               0, 0, 0, 0);
}

TEST(connect_truncated_protocol_name_malformed)
{
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x03, 0, 4, 'M');
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x06, 0, 4, 'M', 'Q', 'T', 'T');
}

TEST(connect_reserved_flag_malformed)
{
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x03, 0, 0,
               0, 0, 0);
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x01, 0, 0,
               0, 0);
}

TEST(connect_will_qos3_malformed)
{
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x11, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x1E, 0, 0,
               0, 0, 0, 1, 't', 0, 0);
}

TEST(connect_will_qos_without_will_flag_malformed)
{
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x0A, 0, 0,
               0, 0);
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x12, 0, 0,
               0, 0, 0);
}

TEST(connect_will_retain_without_will_flag_malformed)
{
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x22, 0, 0,
               0, 0);
}

TEST(connect_password_without_username_v311_malformed)
{
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x42, 0, 0,
               0, 0, 0, 2, 'p', 'w');
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x12, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3,
               0x42, 0, 0, 0, 0, 0, 2, 'p', 'w');
}

TEST(connect_password_without_username_v5_allowed)
{
    struct mqtt_packet p;
    DECODE_OK(SRV, 0, &p, 0x10, 0x11, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x42, 0, 0, 0, 0, 0, 0, 2,
              0xFF, 0x00);
    CHECK(p.u.connect.has_password);
    CHECK(!p.u.connect.has_username);
    CHECK_EQ(p.u.connect.password.len, 2);
    CHECK_EQ(p.u.connect.password.ptr[0], 0xFF);
}

TEST(connect_encode_password_without_username_v311_rejected)
{
    struct mqtt_packet p = {.type = MQTT_CONNECT};
    p.u.connect.has_password = true;
    p.u.connect.password = BS("x");
    uint8_t buf[64];
    CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), 0);
    CHECK_EQ(mqtt_encoded_len(&p, 4), 0);
    CHECK(mqtt_encode(&p, 5, buf, sizeof buf) > 0);
}

TEST(connect_client_id_invalid_utf8_malformed)
{
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0E, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0,
               0, 2, 0xC3, 0x28);
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0,
               0, 1, 0x00);
}

TEST(connect_username_invalid_utf8_malformed)
{
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0F, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x82, 0, 0,
               0, 0, 0, 1, 0xFF);
}

TEST(connect_will_topic_wildcard_invalid)
{
    DECODE_ERR(SRV, 0, MQTT_RC_TOPIC_NAME_INVALID, 0x10, 0x15, 0, 4, 'M', 'Q', 'T', 'T', 5,
               0x06, 0, 0, 0, 0, 0, 0, 0, 3, 'a', '/', '#', 0, 0);
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x06, 0, 0,
               0, 0, 0, 2, 'a', '+', 0, 0);
}

TEST(connect_will_topic_empty_invalid)
{
    DECODE_ERR(SRV, 0, MQTT_RC_TOPIC_NAME_INVALID, 0x10, 0x12, 0, 4, 'M', 'Q', 'T', 'T', 5,
               0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}

TEST(connect_will_topic_invalid_utf8_malformed)
{
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x13, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x06, 0, 0,
               0, 0, 0, 0, 0, 1, 0xC0, 0, 0);
}

TEST(connect_will_payload_format_invalid)
{
    /* Will properties: payload format 1; payload 0xFF is not UTF-8. */
    DECODE_ERR(SRV, 0, MQTT_RC_PAYLOAD_FORMAT_INVALID, 0x10, 0x16, 0, 4, 'M', 'Q', 'T', 'T', 5,
               0x06, 0, 0, 0, 0, 0, 2, 0x01, 0x01, 0, 1, 't', 0, 1, 0xFF);
}

TEST(connect_will_payload_format_utf8_with_nul_ok)
{
    struct mqtt_packet p;
    DECODE_OK(SRV, 0, &p, 0x10, 0x18, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x06, 0, 0, 0, 0, 0, 2,
              0x01, 0x01, 0, 1, 't', 0, 3, 'a', 0x00, 'b');
    CHECK_EQ(p.u.connect.will_props.payload_format, 1);
    CHECK_EQ(p.u.connect.will_payload.len, 3);
}

TEST(connect_will_property_not_allowed)
{
    /* Session Expiry is a CONNECT property, not a will property. */
    DECODE_ERR(SRV, 0, MQTT_RC_PROTOCOL_ERROR, 0x10, 0x18, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x06,
               0, 0, 0, 0, 0, 5, 0x11, 0, 0, 0, 1, 0, 1, 't', 0, 0);
}

TEST(connect_will_props_duplicate_protocol_error)
{
    DECODE_ERR(SRV, 0, MQTT_RC_PROTOCOL_ERROR, 0x10, 0x17, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x06,
               0, 0, 0, 0, 0, 4, 0x01, 0x00, 0x01, 0x00, 0, 1, 't', 0, 0);
}

TEST(connect_trailing_bytes_malformed)
{
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0,
               0, 0, 0xAA);
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0E, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 0,
               0, 0, 0, 0xAA);
}

TEST(connect_truncated_payload_malformed)
{
    /* Username flag set but no username. */
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x82, 0, 0,
               0, 0);
    /* Client id length past the end. */
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0,
               0, 5, 'a');
}

TEST(connect_property_not_allowed)
{
    CONNECT5_PROPS_ERR(MQTT_RC_PROTOCOL_ERROR, 0x23, 0, 1);  /* topic alias */
    CONNECT5_PROPS_ERR(MQTT_RC_PROTOCOL_ERROR, 0x24, 1);     /* maximum qos */
    CONNECT5_PROPS_ERR(MQTT_RC_PROTOCOL_ERROR, 0x01, 1);     /* payload format */
    CONNECT5_PROPS_ERR(MQTT_RC_PROTOCOL_ERROR, 0x18, 0, 0, 0, 1); /* will delay */
}

TEST(connect_property_duplicate_protocol_error)
{
    CONNECT5_PROPS_ERR(MQTT_RC_PROTOCOL_ERROR, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2);
    CONNECT5_PROPS_ERR(MQTT_RC_PROTOCOL_ERROR, 0x21, 0, 1, 0x21, 0, 1);
}

TEST(connect_user_property_may_repeat)
{
    static const uint8_t pr[] = {0x26, 0, 1, 'a', 0, 1, 'b', 0x26, 0, 1, 'a', 0, 0};
    uint8_t b[128];
    struct mqtt_packet p;
    uint8_t r;
    size_t n = connect5_with_props(pr, sizeof pr, b);
    CHECK_EQ(decode_buf(b, n, SRV, 5, &p, &r), ST_OK);
    CHECK_EQ(p.u.connect.props.user_prop_count, 2);
    uint32_t pos = 0;
    struct mqtt_bytes k, v;
    CHECK(mqtt_user_props_next(&p.u.connect.props.user_props, &pos, &k, &v));
    CHECK(bytes_is(k, "a") && bytes_is(v, "b"));
    CHECK(mqtt_user_props_next(&p.u.connect.props.user_props, &pos, &k, &v));
    CHECK(bytes_is(k, "a") && bytes_is(v, ""));
    CHECK(!mqtt_user_props_next(&p.u.connect.props.user_props, &pos, &k, &v));
}

TEST(props_boolean_byte_out_of_range)
{
    CONNECT5_PROPS_ERR(MQTT_RC_PROTOCOL_ERROR, 0x17, 2); /* request problem info */
    CONNECT5_PROPS_ERR(MQTT_RC_PROTOCOL_ERROR, 0x19, 0xFF); /* request response info */
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_PROTOCOL_ERROR, "x", 0x01, 2); /* payload format */
}

TEST(props_receive_maximum_zero)
{
    CONNECT5_PROPS_ERR(MQTT_RC_PROTOCOL_ERROR, 0x21, 0, 0);
}

TEST(props_maximum_packet_size_zero)
{
    CONNECT5_PROPS_ERR(MQTT_RC_PROTOCOL_ERROR, 0x27, 0, 0, 0, 0);
}

TEST(props_unknown_id_malformed)
{
    CONNECT5_PROPS_ERR(MQTT_RC_MALFORMED, 0x05, 0);
    CONNECT5_PROPS_ERR(MQTT_RC_MALFORMED, 0x2B, 0);
    CONNECT5_PROPS_ERR(MQTT_RC_MALFORMED, 0x00, 0);
    CONNECT5_PROPS_ERR(MQTT_RC_MALFORMED, 0x80, 0x01, 0);
}

TEST(props_value_truncated_malformed)
{
    CONNECT5_PROPS_ERR(MQTT_RC_MALFORMED, 0x11, 0, 0);             /* u32 short */
    CONNECT5_PROPS_ERR(MQTT_RC_MALFORMED, 0x15, 0, 5, 'a', 'b');   /* string short */
    CONNECT5_PROPS_ERR(MQTT_RC_MALFORMED, 0x26, 0, 1, 'a', 0);     /* pair short */
    CONNECT5_PROPS_ERR(MQTT_RC_MALFORMED, 0x21, 0);                /* u16 short */
}

TEST(props_length_past_packet_malformed)
{
    /* Property length 100 in a short packet. */
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0E, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 0,
               100, 0x11, 0, 0);
    /* Property length varint truncated at the packet end. */
    DECODE_ERR(SRV, 0, MQTT_RC_MALFORMED, 0x10, 0x0B, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 0,
               0x80);
}

TEST(props_string_invalid_utf8_malformed)
{
    CONNECT5_PROPS_ERR(MQTT_RC_MALFORMED, 0x15, 0, 2, 0xED, 0xA0); /* surrogate start */
    CONNECT5_PROPS_ERR(MQTT_RC_MALFORMED, 0x26, 0, 1, 'k', 0, 1, 0x80);
    CONNECT5_PROPS_ERR(MQTT_RC_MALFORMED, 0x26, 0, 1, 0xFE, 0, 0);
}

TEST(props_auth_data_without_method)
{
    CONNECT5_PROPS_ERR(MQTT_RC_PROTOCOL_ERROR, 0x16, 0, 1, 0xAA);
}

TEST(props_binary_data_not_utf8_checked)
{
    static const uint8_t pr[] = {0x15, 0, 1, 'm', 0x16, 0, 2, 0xFF, 0x00};
    uint8_t b[128];
    struct mqtt_packet p;
    uint8_t r;
    size_t n = connect5_with_props(pr, sizeof pr, b);
    CHECK_EQ(decode_buf(b, n, SRV, 5, &p, &r), ST_OK);
    CHECK_EQ(p.u.connect.props.auth_data.len, 2);
    CHECK(bytes_is(p.u.connect.props.auth_method, "m"));
}

TEST(props_interleaved_user_props_iterate_and_reencode)
{
    /* user, session expiry, user: the user_props slice spans all three. */
    static const uint8_t pr[] = {0x26, 0, 1, 'a', 0, 1, '1', 0x11, 0, 0, 0, 9,
                                 0x26, 0, 1, 'b', 0, 1, '2'};
    uint8_t b[128], b2[128];
    struct mqtt_packet p, q;
    uint8_t r;
    size_t n = connect5_with_props(pr, sizeof pr, b);
    CHECK_EQ(decode_buf(b, n, SRV, 5, &p, &r), ST_OK);
    CHECK_EQ(p.u.connect.props.user_prop_count, 2);
    CHECK_EQ(p.u.connect.props.session_expiry, 9);
    uint32_t pos = 0, seen = 0;
    struct mqtt_bytes k, v;
    while (mqtt_user_props_next(&p.u.connect.props.user_props, &pos, &k, &v))
        seen++;
    CHECK_EQ(seen, 2);
    /* Re-encoding must not duplicate the interleaved session expiry. */
    size_t n2 = mqtt_encode(&p, 5, b2, sizeof b2);
    CHECK_EQ(n2, n);
    CHECK_EQ(decode_buf(b2, n2, SRV, 5, &q, &r), ST_OK);
    CHECK(props_eq(&p.u.connect.props, &q.u.connect.props));
}

TEST(props_len_and_encode_agree)
{
    struct mqtt_props p;
    fill_props(&p, M_CONNACK | M_PUBLISH | B(MQTT_PROP_SUBSCRIPTION_ID));
    uint8_t out[512];
    size_t body = mqtt_props_len(&p);
    size_t n = mqtt_props_encode(&p, out, sizeof out);
    CHECK_EQ(n, body + mqtt_varint_len((uint32_t)body));
    uint32_t v;
    CHECK_EQ(mqtt_varint_decode(out, n, &v), (int)mqtt_varint_len((uint32_t)body));
    CHECK_EQ(v, body);
    CHECK_EQ(mqtt_props_encode(&p, out, n - 1), 0);
    struct mqtt_props empty;
    memset(&empty, 0, sizeof empty);
    CHECK_EQ(mqtt_props_len(&empty), 0);
    CHECK_EQ(mqtt_props_encode(&empty, out, sizeof out), 1);
    CHECK_EQ(out[0], 0);
}

TEST(props_encode_exact_bytes)
{
    struct mqtt_props p;
    memset(&p, 0, sizeof p);
    mqtt_props_set(&p, MQTT_PROP_TOPIC_ALIAS);
    p.topic_alias = 0x0102;
    mqtt_props_set(&p, MQTT_PROP_MESSAGE_EXPIRY);
    p.message_expiry = 0x0A0B0C0D;
    uint8_t out[32];
    static const uint8_t want[] = {8, 0x02, 0x0A, 0x0B, 0x0C, 0x0D, 0x23, 0x01, 0x02};
    CHECK_EQ(mqtt_props_encode(&p, out, sizeof out), sizeof want);
    CHECK_MEM(out, want, sizeof want);
}

TEST(user_prop_append_overflow)
{
    uint8_t out[8];
    CHECK_EQ(mqtt_user_prop_append(out, sizeof out, 0, "k", 1, "v", 1), 7);
    CHECK_EQ(mqtt_user_prop_append(out, sizeof out, 7, "k", 1, "v", 1), 0);
    CHECK_EQ(mqtt_user_prop_append(out, sizeof out, 0, "kk", 2, "vv", 2), 0);
}

TEST(user_props_next_stops_on_garbage)
{
    static const uint8_t g[] = {0x26, 0, 5, 'a'};
    struct mqtt_bytes up = {g, sizeof g}, k, v;
    uint32_t pos = 0;
    CHECK(!mqtt_user_props_next(&up, &pos, &k, &v));
    static const uint8_t g2[] = {0x7F, 0, 0};
    struct mqtt_bytes up2 = {g2, sizeof g2};
    pos = 0;
    CHECK(!mqtt_user_props_next(&up2, &pos, &k, &v));
}

/* ---- CONNACK ------------------------------------------------------------ */

TEST(connack_v311_spec_bytes)
{
    struct mqtt_packet p = {.type = MQTT_CONNACK};
    p.u.connack.session_present = true;
    p.u.connack.code = 0;
    uint8_t buf[16];
    static const uint8_t want[] = {0x20, 0x02, 0x01, 0x00};
    CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), 4);
    CHECK_MEM(buf, want, 4);
    struct mqtt_packet d;
    DECODE_OK(CLI, 4, &d, 0x20, 0x02, 0x01, 0x00);
    CHECK(d.u.connack.session_present);
    DECODE_OK(CLI, 4, &d, 0x20, 0x02, 0x00, 0x05);
    CHECK_EQ(d.u.connack.code, MQTT3_REFUSED_NOT_AUTHORIZED);
}

TEST(connack_v31_reserved_byte)
{
    struct mqtt_packet p = {.type = MQTT_CONNACK}, d;
    p.u.connack.session_present = true; /* not representable in 3.1 */
    p.u.connack.code = 2;
    uint8_t buf[16];
    CHECK_EQ(mqtt_encode(&p, 3, buf, sizeof buf), 4);
    CHECK_EQ(buf[2], 0);
    uint8_t r;
    CHECK_EQ(decode_buf(buf, 4, CLI, 3, &d, &r), ST_OK);
    CHECK(!d.u.connack.session_present);
    CHECK_EQ(d.u.connack.code, 2);
}

TEST(connack_v311_bad_return_code_malformed)
{
    DECODE_ERR(CLI, 4, MQTT_RC_MALFORMED, 0x20, 0x02, 0x00, 0x06);
}

TEST(connack_v311_reserved_flags_malformed)
{
    DECODE_ERR(CLI, 4, MQTT_RC_MALFORMED, 0x20, 0x02, 0x02, 0x00);
    DECODE_ERR(CLI, 5, MQTT_RC_MALFORMED, 0x20, 0x03, 0x80, 0x00, 0x00);
}

TEST(connack_v311_wrong_length_malformed)
{
    DECODE_ERR(CLI, 4, MQTT_RC_MALFORMED, 0x20, 0x03, 0x00, 0x00, 0x00);
    DECODE_ERR(CLI, 4, MQTT_RC_MALFORMED, 0x20, 0x01, 0x00);
}

TEST(connack_session_present_with_failure)
{
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x20, 0x03, 0x01, 0x80, 0x00);
    DECODE_ERR(CLI, 4, MQTT_RC_MALFORMED, 0x20, 0x02, 0x01, 0x02);
}

TEST(connack_v5_roundtrip_all_properties)
{
    struct mqtt_packet in = {.type = MQTT_CONNACK}, out;
    in.u.connack.session_present = true;
    fill_props(&in.u.connack.props, M_CONNACK);
    uint8_t buf[1024];
    if (!roundtrip(&in, 5, CLI, &out, buf, sizeof buf))
        return;
    CHECK(out.u.connack.session_present);
    CHECK_EQ(out.u.connack.code, 0);
    CHECK(props_eq(&out.u.connack.props, &in.u.connack.props));
}

TEST(connack_v5_failure_codes_roundtrip)
{
    static const uint8_t codes[] = {0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
                                    0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D,
                                    0x9F};
    for (size_t i = 0; i < sizeof codes; i++) {
        struct mqtt_packet in = {.type = MQTT_CONNACK}, out;
        in.u.connack.code = codes[i];
        uint8_t buf[16];
        if (roundtrip(&in, 5, CLI, &out, buf, sizeof buf))
            CHECK_EQ(out.u.connack.code, codes[i]);
    }
}

TEST(connack_v5_invalid_reason_code)
{
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x20, 0x03, 0x00, 0x10, 0x00);
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x20, 0x03, 0x00, 0x8B, 0x00);
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x20, 0x03, 0x00, 0x01, 0x00);
}

TEST(connack_v5_missing_property_length_malformed)
{
    DECODE_ERR(CLI, 5, MQTT_RC_MALFORMED, 0x20, 0x02, 0x00, 0x00);
}

TEST(connack_v5_property_rules)
{
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x20, 0x05, 0, 0, 2, 0x24, 2); /* max qos 2 */
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x20, 0x05, 0, 0, 2, 0x25, 3); /* retain */
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x20, 0x05, 0, 0, 2, 0x28, 2);
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x20, 0x05, 0, 0, 2, 0x29, 2);
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x20, 0x05, 0, 0, 2, 0x2A, 2);
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x20, 0x06, 0, 0, 3, 0x23, 0, 1); /* alias */
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x20, 0x06, 0, 0, 3, 0x17, 1, 0x17); /* CONNECT-only */
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x20, 0x07, 0, 0, 4, 0x24, 0, 0x24, 1);
}

TEST(connack_v5_trailing_bytes_malformed)
{
    DECODE_ERR(CLI, 5, MQTT_RC_MALFORMED, 0x20, 0x04, 0x00, 0x00, 0x00, 0x00);
}

/* ---- PUBLISH ------------------------------------------------------------ */

TEST(publish_v311_spec_bytes)
{
    static const uint8_t want[] = {0x32, 0x09, 0, 3, 'a', '/', 'b', 0x00, 0x0A, 'h', 'i'};
    struct mqtt_packet p = {.type = MQTT_PUBLISH};
    p.u.publish.qos = 1;
    p.u.publish.packet_id = 10;
    p.u.publish.topic = BS("a/b");
    p.u.publish.payload = BS("hi");
    uint8_t buf[32];
    CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), sizeof want);
    CHECK_MEM(buf, want, sizeof want);
    struct mqtt_packet d;
    DECODE_OK(SRV, 4, &d, 0x32, 0x09, 0, 3, 'a', '/', 'b', 0x00, 0x0A, 'h', 'i');
    CHECK_EQ(d.flags, 2);
    CHECK_EQ(d.u.publish.qos, 1);
    CHECK(!d.u.publish.dup);
    CHECK(!d.u.publish.retain);
    CHECK_EQ(d.u.publish.packet_id, 10);
    CHECK(bytes_is(d.u.publish.topic, "a/b"));
    CHECK(bytes_is(d.u.publish.payload, "hi"));
    CHECK(d.u.publish.payload.ptr > d.u.publish.topic.ptr); /* a view, not a copy */
}

TEST(publish_v5_spec_bytes_short)
{
    /* QoS 0, retain, topic "t", empty property block, payload "x". */
    static const uint8_t want[] = {0x31, 0x05, 0, 1, 't', 0x00, 'x'};
    struct mqtt_packet p = {.type = MQTT_PUBLISH};
    p.u.publish.retain = true;
    p.u.publish.topic = BS("t");
    p.u.publish.payload = BS("x");
    uint8_t buf[32];
    CHECK_EQ(mqtt_encode(&p, 5, buf, sizeof buf), sizeof want);
    CHECK_MEM(buf, want, sizeof want);
}

static void check_publish_roundtrip(uint8_t ver, uint8_t qos, bool dup, bool retain,
                                    enum mqtt_role role)
{
    struct mqtt_packet in = {.type = MQTT_PUBLISH}, out;
    struct mqtt_publish *p = &in.u.publish;
    p->qos = qos;
    p->dup = dup;
    p->retain = retain;
    p->packet_id = qos ? 0xFFFF : 0;
    p->topic = BS("a/b/\xe2\x82\xac");
    p->payload = BS("payload \xe2\x82\xac");
    if (ver == 5) {
        fill_props(&p->props, M_PUBLISH | (role == CLI ? B(MQTT_PROP_SUBSCRIPTION_ID) : 0));
        if (role == CLI) {
            p->props.sub_ids[1] = 1;
            p->props.sub_ids[2] = 300;
            p->props.sub_id_count = 3;
        }
    }
    uint8_t buf[1024];
    if (!roundtrip(&in, ver, role, &out, buf, sizeof buf))
        return;
    struct mqtt_publish *d = &out.u.publish;
    CHECK_EQ(d->qos, qos);
    CHECK_EQ(d->dup, dup);
    CHECK_EQ(d->retain, retain);
    CHECK_EQ(d->packet_id, p->packet_id);
    CHECK(bytes_eq(d->topic, p->topic));
    CHECK(bytes_eq(d->payload, p->payload));
    CHECK(props_eq(&d->props, &p->props));
}

TEST(publish_roundtrip_v31_all_qos)
{
    check_publish_roundtrip(3, 0, false, false, SRV);
    check_publish_roundtrip(3, 1, true, true, SRV);
    check_publish_roundtrip(3, 2, false, true, CLI);
}

TEST(publish_roundtrip_v311_all_qos)
{
    check_publish_roundtrip(4, 0, false, true, SRV);
    check_publish_roundtrip(4, 1, false, false, CLI);
    check_publish_roundtrip(4, 2, true, false, SRV);
}

TEST(publish_roundtrip_v5_all_properties)
{
    check_publish_roundtrip(5, 0, false, false, SRV);
    check_publish_roundtrip(5, 1, true, true, SRV);
    check_publish_roundtrip(5, 2, false, true, SRV);
}

TEST(publish_roundtrip_v5_to_client_with_subscription_ids)
{
    check_publish_roundtrip(5, 0, false, false, CLI);
    check_publish_roundtrip(5, 2, true, false, CLI);
}

TEST(publish_empty_payload)
{
    struct mqtt_packet p;
    DECODE_OK(SRV, 4, &p, 0x30, 0x03, 0, 1, 't');
    CHECK_EQ(p.u.publish.payload.len, 0);
    CHECK_EQ(p.u.publish.packet_id, 0);
}

TEST(publish_topic_wildcard_invalid)
{
    DECODE_ERR(SRV, 5, MQTT_RC_TOPIC_NAME_INVALID, 0x30, 0x05, 0, 2, 'a', '+', 0);
    DECODE_ERR(SRV, 5, MQTT_RC_TOPIC_NAME_INVALID, 0x30, 0x04, 0, 1, '#', 0);
    DECODE_ERR(CLI, 5, MQTT_RC_TOPIC_NAME_INVALID, 0x30, 0x06, 0, 3, 'a', '/', '#', 0);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x30, 0x04, 0, 2, 'a', '+');
}

TEST(publish_topic_invalid_utf8_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x30, 0x05, 0, 2, 0xC3, 0x28, 0);
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x30, 0x05, 0, 2, 'a', 0x00, 0);
}

TEST(publish_topic_length_past_packet_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x30, 0x03, 0, 9, 'a');
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x30, 0x01, 0);
}

TEST(publish_empty_topic_without_alias)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x30, 0x04, 0, 0, 0, 'x');
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x30, 0x03, 0, 0, 'x');
    DECODE_ERR(SRV, 3, MQTT_RC_MALFORMED, 0x30, 0x02, 0, 0);
}

TEST(publish_empty_topic_with_alias_v5)
{
    struct mqtt_packet p;
    DECODE_OK(SRV, 5, &p, 0x30, 0x07, 0, 0, 3, 0x23, 0, 7, 'x');
    CHECK_EQ(p.u.publish.topic.len, 0);
    CHECK_EQ(p.u.publish.props.topic_alias, 7);
    CHECK(bytes_is(p.u.publish.payload, "x"));
    struct mqtt_packet in = {.type = MQTT_PUBLISH}, out;
    in.u.publish.payload = BS("y");
    mqtt_props_set(&in.u.publish.props, MQTT_PROP_TOPIC_ALIAS);
    in.u.publish.props.topic_alias = 9;
    uint8_t buf[64];
    if (roundtrip(&in, 5, SRV, &out, buf, sizeof buf))
        CHECK_EQ(out.u.publish.props.topic_alias, 9);
}

TEST(publish_packet_id_zero)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x32, 0x06, 0, 1, 't', 0, 0, 0);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x34, 0x05, 0, 1, 't', 0, 0);
}

TEST(publish_packet_id_truncated_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x32, 0x04, 0, 1, 't', 0);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x32, 0x04, 0, 1, 't', 0);
}

TEST(publish_v5_missing_property_length_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x30, 0x03, 0, 1, 't');
}

TEST(publish_topic_alias_zero)
{
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_PROTOCOL_ERROR, "x", 0x23, 0, 0);
}

TEST(publish_response_topic_wildcard)
{
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_PROTOCOL_ERROR, "x", 0x08, 0, 3, 'a', '/', '+');
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_PROTOCOL_ERROR, "x", 0x08, 0, 0);
    PUBLISH5_PROPS(SRV, ST_OK, 0, "x", 0x08, 0, 3, 'a', '/', 'b');
}

TEST(publish_subscription_id_from_client_not_allowed)
{
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_PROTOCOL_ERROR, "x", 0x0B, 5);
    PUBLISH5_PROPS(CLI, ST_OK, 0, "x", 0x0B, 5);
}

TEST(publish_subscription_id_zero)
{
    PUBLISH5_PROPS(CLI, ST_ERR, MQTT_RC_PROTOCOL_ERROR, "x", 0x0B, 0);
}

TEST(publish_subscription_id_varint_malformed)
{
    PUBLISH5_PROPS(CLI, ST_ERR, MQTT_RC_MALFORMED, "", 0x0B, 0x80);
    PUBLISH5_PROPS(CLI, ST_ERR, MQTT_RC_MALFORMED, "", 0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01);
}

TEST(publish_many_subscription_ids_keeps_first_eight)
{
    static const uint8_t pr[] = {0x0B, 1, 0x0B, 2, 0x0B, 3, 0x0B, 4, 0x0B, 5,
                                 0x0B, 6, 0x0B, 7, 0x0B, 8, 0x0B, 9, 0x0B, 10};
    uint8_t b[128];
    struct mqtt_packet p;
    uint8_t r;
    size_t n = publish5_with_props(pr, sizeof pr, "x", 1, b);
    CHECK_EQ(decode_buf(b, n, CLI, 5, &p, &r), ST_OK);
    CHECK_EQ(p.u.publish.props.sub_id_count, 10);
    CHECK_EQ(p.u.publish.props.sub_ids[0], 1);
    CHECK_EQ(p.u.publish.props.sub_ids[7], 8);
}

TEST(publish_payload_format_invalid_utf8)
{
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_PAYLOAD_FORMAT_INVALID, "\xff", 0x01, 1);
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_PAYLOAD_FORMAT_INVALID, "\xed\xa0\x80", 0x01, 1);
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_PAYLOAD_FORMAT_INVALID, "ab\xc3", 0x01, 1);
}

TEST(publish_payload_format_valid_utf8)
{
    PUBLISH5_PROPS(SRV, ST_OK, 0, "h\xc3\xa9llo", 0x01, 1);
    PUBLISH5_PROPS(SRV, ST_OK, 0, "a\x00" "b", 0x01, 1);
    PUBLISH5_PROPS(SRV, ST_OK, 0, "", 0x01, 1);
}

TEST(publish_binary_payload_unchecked)
{
    PUBLISH5_PROPS(SRV, ST_OK, 0, "\xff\xfe\x00", 0x01, 0);
    PUBLISH5_PROPS(SRV, ST_OK, 0, "\xff\xfe\x00");
}

TEST(publish_property_duplicate)
{
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_PROTOCOL_ERROR, "x", 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2);
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_PROTOCOL_ERROR, "x", 0x09, 0, 0, 0x09, 0, 0);
}

TEST(publish_property_not_allowed)
{
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_PROTOCOL_ERROR, "x", 0x11, 0, 0, 0, 1);
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_PROTOCOL_ERROR, "x", 0x18, 0, 0, 0, 1);
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_PROTOCOL_ERROR, "x", 0x1F, 0, 0);
}

TEST(publish_content_type_invalid_utf8_malformed)
{
    PUBLISH5_PROPS(SRV, ST_ERR, MQTT_RC_MALFORMED, "x", 0x03, 0, 1, 0xC0);
}

TEST(publish_header_matches_full_encode)
{
    struct mqtt_packet in = {.type = MQTT_PUBLISH};
    struct mqtt_publish *p = &in.u.publish;
    p->qos = 1;
    p->packet_id = 4242;
    p->topic = BS("x/y");
    static uint8_t payload[300];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)i;
    p->payload.ptr = payload;
    p->payload.len = sizeof payload;
    fill_props(&p->props, M_PUBLISH & ~B(MQTT_PROP_PAYLOAD_FORMAT));
    for (uint8_t ver = 3; ver <= 5; ver++) {
        uint8_t full[1024], hdr[1024];
        size_t n = mqtt_encode(&in, ver, full, sizeof full);
        size_t h = mqtt_encode_publish_header(p, ver, hdr, sizeof hdr);
        CHECK(h > 0);
        CHECK_EQ(h + sizeof payload, n);
        CHECK_MEM(full, hdr, h);
        CHECK_MEM(full + h, payload, sizeof payload);
        CHECK_EQ(mqtt_encode_publish_header(p, ver, hdr, h - 1), 0);
    }
}

TEST(publish_encode_rejects_invalid)
{
    struct mqtt_packet p = {.type = MQTT_PUBLISH};
    p.u.publish.topic = BS("t");
    uint8_t buf[64];
    p.u.publish.qos = 3;
    CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), 0);
    p.u.publish.qos = 0;
    p.u.publish.dup = true;
    CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), 0);
    p.u.publish.dup = false;
    p.u.publish.qos = 1;
    p.u.publish.packet_id = 0;
    CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), 0);
}

/* ---- PUBACK, PUBREC, PUBREL, PUBCOMP ------------------------------------- */

static const uint8_t ack_types[] = {MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP};

TEST(ack_v311_spec_bytes)
{
    for (size_t i = 0; i < 4; i++) {
        struct mqtt_packet p = {.type = ack_types[i]};
        p.u.ack.packet_id = 0x1234;
        uint8_t buf[16];
        CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), 4);
        CHECK_EQ(buf[0], (uint8_t)(ack_types[i] << 4 | (ack_types[i] == MQTT_PUBREL ? 2 : 0)));
        CHECK_EQ(buf[1], 2);
        CHECK_EQ(buf[2], 0x12);
        CHECK_EQ(buf[3], 0x34);
    }
}

TEST(ack_roundtrip_all_versions_both_roles)
{
    for (uint8_t ver = 3; ver <= 5; ver++)
        for (size_t i = 0; i < 4; i++)
            for (int role = 0; role < 2; role++) {
                struct mqtt_packet in = {.type = ack_types[i]}, out;
                in.u.ack.packet_id = (uint16_t)(100 + i);
                uint8_t buf[16];
                if (roundtrip(&in, ver, (enum mqtt_role)role, &out, buf, sizeof buf)) {
                    CHECK_EQ(out.u.ack.packet_id, 100 + i);
                    CHECK_EQ(out.u.ack.reason, 0);
                }
            }
}

TEST(ack_v5_short_form_when_success_without_props)
{
    struct mqtt_packet p = {.type = MQTT_PUBACK};
    p.u.ack.packet_id = 1;
    uint8_t buf[16];
    CHECK_EQ(mqtt_encode(&p, 5, buf, sizeof buf), 4);
    p.u.ack.reason = 0x10;
    CHECK_EQ(mqtt_encode(&p, 5, buf, sizeof buf), 5);
    CHECK_EQ(buf[1], 3);
    CHECK_EQ(buf[4], 0x10);
}

TEST(ack_v5_roundtrip_reason_and_properties)
{
    static const uint8_t puback_codes[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
    static const uint8_t pubrel_codes[] = {0x00, 0x92};
    for (size_t i = 0; i < 4; i++) {
        bool rel = ack_types[i] == MQTT_PUBREL || ack_types[i] == MQTT_PUBCOMP;
        const uint8_t *codes = rel ? pubrel_codes : puback_codes;
        size_t nc = rel ? sizeof pubrel_codes : sizeof puback_codes;
        for (size_t k = 0; k < nc; k++) {
            struct mqtt_packet in = {.type = ack_types[i]}, out;
            in.u.ack.packet_id = 7;
            in.u.ack.reason = codes[k];
            fill_props(&in.u.ack.props, M_REASON);
            uint8_t buf[256];
            if (!roundtrip(&in, 5, SRV, &out, buf, sizeof buf))
                continue;
            CHECK_EQ(out.u.ack.reason, codes[k]);
            CHECK(props_eq(&out.u.ack.props, &in.u.ack.props));
        }
    }
}

TEST(ack_v5_reason_without_properties_decodes)
{
    struct mqtt_packet p;
    DECODE_OK(SRV, 5, &p, 0x40, 0x03, 0, 1, 0x80);
    CHECK_EQ(p.u.ack.reason, 0x80);
    CHECK_EQ(p.u.ack.props.present, 0);
    DECODE_OK(SRV, 5, &p, 0x40, 0x04, 0, 1, 0x00, 0x00);
    CHECK_EQ(p.u.ack.reason, 0);
}

TEST(ack_v5_invalid_reason_for_type)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x62, 0x03, 0, 1, 0x10); /* PUBREL 0x10 */
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x40, 0x03, 0, 1, 0x92); /* PUBACK 0x92 */
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x50, 0x03, 0, 1, 0x01);
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x70, 0x03, 0, 1, 0x80); /* PUBCOMP 0x80 */
}

TEST(ack_packet_id_zero)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x40, 0x02, 0, 0);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x50, 0x02, 0, 0);
}

TEST(ack_v311_wrong_length_malformed)
{
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x40, 0x03, 0, 1, 0);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x40, 0x01, 0);
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x40, 0x01, 0);
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x40, 0x00);
}

TEST(ack_v5_property_not_allowed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x40, 0x07, 0, 1, 0, 3, 0x23, 0, 1);
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x40, 0x06, 0, 1, 0, 2, 0x01, 0);
}

TEST(ack_v5_trailing_bytes_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x40, 0x05, 0, 1, 0, 0, 0xAA);
}

/* ---- SUBSCRIBE / UNSUBSCRIBE -------------------------------------------- */

TEST(subscribe_v311_spec_bytes)
{
    static const uint8_t want[] = {0x82, 0x0E, 0x00, 0x0A, 0, 3, 'a', '/', 'b', 0x01,
                                   0, 3, 'c', '/', '#', 0x02};
    uint8_t list[64];
    struct mqtt_sub_opts o1 = {.qos = 1}, o2 = {.qos = 2};
    size_t n = mqtt_sub_list_append(list, sizeof list, 0, "a/b", 3, &o1, true);
    n = mqtt_sub_list_append(list, sizeof list, n, "c/#", 3, &o2, true);
    CHECK_EQ(n, 12);
    struct mqtt_packet p = {.type = MQTT_SUBSCRIBE};
    p.u.subscribe.packet_id = 10;
    p.u.subscribe.list.ptr = list;
    p.u.subscribe.list.len = (uint32_t)n;
    uint8_t buf[64];
    CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), sizeof want);
    CHECK_MEM(buf, want, sizeof want);
    struct mqtt_packet d;
    uint8_t r;
    CHECK_EQ(decode_buf(want, sizeof want, SRV, 4, &d, &r), ST_OK);
    CHECK_EQ(d.u.subscribe.count, 2);
    CHECK_EQ(d.u.subscribe.packet_id, 10);
    uint32_t pos = 0;
    struct mqtt_bytes f;
    struct mqtt_sub_opts o;
    CHECK(mqtt_sub_next(&d.u.subscribe, &pos, &f, &o));
    CHECK(bytes_is(f, "a/b"));
    CHECK_EQ(o.qos, 1);
    CHECK(mqtt_sub_next(&d.u.subscribe, &pos, &f, &o));
    CHECK(bytes_is(f, "c/#"));
    CHECK_EQ(o.qos, 2);
    CHECK(!mqtt_sub_next(&d.u.subscribe, &pos, &f, &o));
}

static void check_subscribe_roundtrip(uint8_t ver)
{
    uint8_t list[256];
    struct mqtt_sub_opts opts[3] = {
        {.qos = 0}, {.qos = 1, .no_local = true, .retain_handling = 2},
        {.qos = 2, .retain_as_published = true, .retain_handling = 1}};
    static const char *filters[3] = {"a/+/c", "$share/g/x/#", "#"};
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        struct mqtt_sub_opts o = opts[i];
        if (ver != 5)
            o = (struct mqtt_sub_opts){.qos = o.qos};
        n = mqtt_sub_list_append(list, sizeof list, n, filters[i], strlen(filters[i]), &o, true);
    }
    struct mqtt_packet in = {.type = MQTT_SUBSCRIBE}, out;
    in.u.subscribe.packet_id = 513;
    in.u.subscribe.list.ptr = list;
    in.u.subscribe.list.len = (uint32_t)n;
    if (ver == 5) {
        fill_props(&in.u.subscribe.props, B(MQTT_PROP_SUBSCRIPTION_ID) | M_USER);
        in.u.subscribe.props.sub_ids[0] = 12345;
    }
    uint8_t buf[512];
    if (!roundtrip(&in, ver, SRV, &out, buf, sizeof buf))
        return;
    CHECK_EQ(out.u.subscribe.packet_id, 513);
    CHECK_EQ(out.u.subscribe.count, 3);
    CHECK(props_eq(&out.u.subscribe.props, &in.u.subscribe.props));
    uint32_t pos = 0;
    struct mqtt_bytes f;
    struct mqtt_sub_opts o;
    for (int i = 0; i < 3; i++) {
        CHECK(mqtt_sub_next(&out.u.subscribe, &pos, &f, &o));
        CHECK(bytes_is(f, filters[i]));
        CHECK_EQ(o.qos, opts[i].qos);
        if (ver == 5) {
            CHECK_EQ(o.no_local, opts[i].no_local);
            CHECK_EQ(o.retain_as_published, opts[i].retain_as_published);
            CHECK_EQ(o.retain_handling, opts[i].retain_handling);
        }
    }
    CHECK(!mqtt_sub_next(&out.u.subscribe, &pos, &f, &o));
}

TEST(subscribe_roundtrip_v31) { check_subscribe_roundtrip(3); }
TEST(subscribe_roundtrip_v311) { check_subscribe_roundtrip(4); }
TEST(subscribe_roundtrip_v5_options_and_properties) { check_subscribe_roundtrip(5); }

TEST(subscribe_no_filters)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x82, 0x03, 0, 1, 0);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x82, 0x02, 0, 1);
}

TEST(subscribe_packet_id_zero)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x82, 0x07, 0, 0, 0, 0, 1, 'a', 0);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x82, 0x06, 0, 0, 0, 1, 'a', 0);
}

TEST(subscribe_v311_reserved_option_bits_malformed)
{
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x82, 0x06, 0, 1, 0, 1, 'a', 0x04);
    DECODE_ERR(SRV, 3, MQTT_RC_MALFORMED, 0x82, 0x06, 0, 1, 0, 1, 'a', 0x80);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x82, 0x06, 0, 1, 0, 1, 'a', 0x03);
}

TEST(subscribe_v5_reserved_option_bits_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0x40);
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0x80);
}

TEST(subscribe_v5_retain_handling_3)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0x30);
}

TEST(subscribe_v5_qos_3)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0x03);
}

TEST(subscribe_v5_malformed_beats_protocol_error)
{
    /* First filter has QoS 3, second a reserved bit: the packet is malformed. */
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x82, 0x0B, 0, 1, 0, 0, 1, 'a', 0x03, 0, 1, 'b', 0xC0);
}

TEST(subscribe_invalid_filter_is_left_to_broker)
{
    struct mqtt_packet p;
    DECODE_OK(SRV, 5, &p, 0x82, 0x0E, 0, 1, 0, 0, 5, 'a', '/', '#', '/', 'b', 0x01, 0, 0, 0x00);
    CHECK_EQ(p.u.subscribe.count, 2);
    uint32_t pos = 0;
    struct mqtt_bytes f;
    struct mqtt_sub_opts o;
    CHECK(mqtt_sub_next(&p.u.subscribe, &pos, &f, &o));
    CHECK(!topic_filter_valid(f.ptr, f.len));
    CHECK(mqtt_sub_next(&p.u.subscribe, &pos, &f, &o));
    CHECK_EQ(f.len, 0);
    CHECK(!topic_filter_valid(f.ptr, f.len));
    DECODE_OK(SRV, 4, &p, 0x82, 0x08, 0, 1, 0, 3, 'a', '+', 'b', 0x00);
}

TEST(subscribe_no_local_on_shared_left_to_broker)
{
    struct mqtt_packet p;
    DECODE_OK(SRV, 5, &p, 0x82, 0x0D, 0, 1, 0, 0, 7, '$', 's', 'h', 'a', 'r', 'e', '/', 0x04);
    CHECK_EQ(p.u.subscribe.count, 1);
}

TEST(subscribe_filter_invalid_utf8_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x82, 0x08, 0, 1, 0, 0, 2, 0xC3, 0x28, 0);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x82, 0x06, 0, 1, 0, 1, 0x00, 0);
}

TEST(subscribe_missing_options_byte_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x82, 0x06, 0, 1, 0, 0, 1, 'a');
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0x82, 0x05, 0, 1, 0, 1, 'a');
}

TEST(subscribe_filter_length_past_packet_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0x82, 0x07, 0, 1, 0, 0, 9, 'a', 0);
}

TEST(subscribe_subscription_id_rules)
{
    /* zero, duplicated, and the maximum value. */
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x82, 0x09, 0, 1, 2, 0x0B, 0, 0, 1, 'a', 0);
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x82, 0x0B, 0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, 'a',
               0);
    struct mqtt_packet p;
    DECODE_OK(SRV, 5, &p, 0x82, 0x0C, 0, 1, 5, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F, 0, 1, 'a', 0);
    CHECK_EQ(p.u.subscribe.props.sub_ids[0], 268435455);
    CHECK_EQ(p.u.subscribe.props.sub_id_count, 1);
}

TEST(subscribe_property_not_allowed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0x82, 0x0A, 0, 1, 3, 0x1F, 0, 0, 0, 1, 'a', 0);
}

TEST(sub_list_append_limits)
{
    uint8_t list[8];
    struct mqtt_sub_opts o = {.qos = 1};
    CHECK_EQ(mqtt_sub_list_append(list, sizeof list, 0, "abcde", 5, &o, true), 8);
    CHECK_EQ(mqtt_sub_list_append(list, sizeof list, 0, "abcdef", 6, &o, true), 0);
    CHECK_EQ(mqtt_sub_list_append(list, sizeof list, 0, "abcdef", 6, NULL, false), 8);
    CHECK_EQ(mqtt_sub_list_append(list, sizeof list, 0, "a", 1, NULL, true), 0);
    CHECK_EQ(mqtt_sub_list_append(list, sizeof list, 9, "a", 1, NULL, false), 0);
}

TEST(sub_opts_byte_encoding)
{
    struct mqtt_sub_opts o = {.qos = 2, .no_local = true, .retain_as_published = true,
                              .retain_handling = 2};
    CHECK_EQ(mqtt_sub_opts_byte(&o), 0x2E);
}

TEST(sub_next_stops_on_truncated_list)
{
    static const uint8_t l[] = {0, 3, 'a', 'b'};
    struct mqtt_subscribe s = {.list = {l, sizeof l}};
    uint32_t pos = 0;
    struct mqtt_bytes f;
    struct mqtt_sub_opts o;
    CHECK(!mqtt_sub_next(&s, &pos, &f, &o));
    CHECK(!mqtt_unsub_next(&s, &pos, &f));
    static const uint8_t l2[] = {0, 1, 'a'}; /* no options byte */
    struct mqtt_subscribe s2 = {.list = {l2, sizeof l2}};
    CHECK(!mqtt_sub_next(&s2, &pos, &f, &o));
    CHECK(mqtt_unsub_next(&s2, &pos, &f));
}

TEST(subscribe_encode_empty_list_rejected)
{
    struct mqtt_packet p = {.type = MQTT_SUBSCRIBE};
    p.u.subscribe.packet_id = 1;
    uint8_t buf[16];
    CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), 0);
}

static void check_unsubscribe_roundtrip(uint8_t ver)
{
    uint8_t list[64];
    size_t n = mqtt_sub_list_append(list, sizeof list, 0, "a/b", 3, NULL, false);
    n = mqtt_sub_list_append(list, sizeof list, n, "$share/g/#", 10, NULL, false);
    struct mqtt_packet in = {.type = MQTT_UNSUBSCRIBE}, out;
    in.u.subscribe.packet_id = 9;
    in.u.subscribe.list.ptr = list;
    in.u.subscribe.list.len = (uint32_t)n;
    if (ver == 5)
        fill_props(&in.u.subscribe.props, M_USER);
    uint8_t buf[256];
    if (!roundtrip(&in, ver, SRV, &out, buf, sizeof buf))
        return;
    CHECK_EQ(out.flags, 2);
    CHECK_EQ(out.u.subscribe.packet_id, 9);
    CHECK_EQ(out.u.subscribe.count, 2);
    CHECK(props_eq(&out.u.subscribe.props, &in.u.subscribe.props));
    uint32_t pos = 0;
    struct mqtt_bytes f;
    CHECK(mqtt_unsub_next(&out.u.subscribe, &pos, &f));
    CHECK(bytes_is(f, "a/b"));
    CHECK(mqtt_unsub_next(&out.u.subscribe, &pos, &f));
    CHECK(bytes_is(f, "$share/g/#"));
    CHECK(!mqtt_unsub_next(&out.u.subscribe, &pos, &f));
}

TEST(unsubscribe_roundtrip_v31) { check_unsubscribe_roundtrip(3); }
TEST(unsubscribe_roundtrip_v311) { check_unsubscribe_roundtrip(4); }
TEST(unsubscribe_roundtrip_v5) { check_unsubscribe_roundtrip(5); }

TEST(unsubscribe_no_filters)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0xA2, 0x03, 0, 1, 0);
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0xA2, 0x02, 0, 1);
}

TEST(unsubscribe_filter_invalid_utf8_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0xA2, 0x06, 0, 1, 0, 0, 1, 0xFF);
}

TEST(unsubscribe_property_not_allowed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0xA2, 0x08, 0, 1, 2, 0x0B, 1, 0, 1, 'a');
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0xA2, 0x09, 0, 1, 3, 0x1F, 0, 0, 0, 1, 'a');
}

TEST(unsubscribe_truncated_filter_malformed)
{
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0xA2, 0x05, 0, 1, 0, 4, 'a');
}

/* ---- SUBACK / UNSUBACK -------------------------------------------------- */

TEST(suback_v311_spec_bytes)
{
    static const uint8_t codes[] = {0x00, 0x01, 0x02, 0x80};
    static const uint8_t want[] = {0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80};
    struct mqtt_packet p = {.type = MQTT_SUBACK};
    p.u.suback.packet_id = 10;
    p.u.suback.codes = codes;
    p.u.suback.count = 4;
    uint8_t buf[16];
    CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), sizeof want);
    CHECK_MEM(buf, want, sizeof want);
    struct mqtt_packet d;
    uint8_t r;
    CHECK_EQ(decode_buf(want, sizeof want, CLI, 4, &d, &r), ST_OK);
    CHECK_EQ(d.u.suback.count, 4);
    CHECK_MEM(d.u.suback.codes, codes, 4);
}

TEST(suback_v5_roundtrip_all_codes_and_properties)
{
    static const uint8_t codes[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97,
                                    0x9E, 0xA1, 0xA2};
    struct mqtt_packet in = {.type = MQTT_SUBACK}, out;
    in.u.suback.packet_id = 300;
    in.u.suback.codes = codes;
    in.u.suback.count = sizeof codes;
    fill_props(&in.u.suback.props, M_REASON);
    uint8_t buf[256];
    if (!roundtrip(&in, 5, CLI, &out, buf, sizeof buf))
        return;
    CHECK_EQ(out.u.suback.packet_id, 300);
    CHECK_EQ(out.u.suback.count, sizeof codes);
    CHECK_MEM(out.u.suback.codes, codes, sizeof codes);
    CHECK(props_eq(&out.u.suback.props, &in.u.suback.props));
}

TEST(suback_roundtrip_v31)
{
    static const uint8_t codes[] = {0x02, 0x00};
    struct mqtt_packet in = {.type = MQTT_SUBACK}, out;
    in.u.suback.packet_id = 1;
    in.u.suback.codes = codes;
    in.u.suback.count = 2;
    uint8_t buf[16];
    if (roundtrip(&in, 3, CLI, &out, buf, sizeof buf))
        CHECK_MEM(out.u.suback.codes, codes, 2);
}

TEST(suback_invalid_code)
{
    DECODE_ERR(CLI, 4, MQTT_RC_MALFORMED, 0x90, 0x03, 0, 1, 0x03);
    DECODE_ERR(CLI, 4, MQTT_RC_MALFORMED, 0x90, 0x03, 0, 1, 0x8F);
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x90, 0x04, 0, 1, 0, 0x03);
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x90, 0x04, 0, 1, 0, 0x11);
}

TEST(suback_no_codes)
{
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x90, 0x03, 0, 1, 0);
    DECODE_ERR(CLI, 4, MQTT_RC_MALFORMED, 0x90, 0x02, 0, 1);
}

TEST(suback_packet_id_zero)
{
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x90, 0x04, 0, 0, 0, 0);
}

TEST(suback_property_not_allowed)
{
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0x90, 0x06, 0, 1, 2, 0x0B, 1, 0);
}

TEST(unsuback_v311_spec_bytes)
{
    static const uint8_t want[] = {0xB0, 0x02, 0x00, 0x0B};
    struct mqtt_packet p = {.type = MQTT_UNSUBACK};
    p.u.suback.packet_id = 11;
    uint8_t buf[16];
    CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), 4);
    CHECK_MEM(buf, want, 4);
    struct mqtt_packet d;
    DECODE_OK(CLI, 4, &d, 0xB0, 0x02, 0x00, 0x0B);
    CHECK_EQ(d.u.suback.packet_id, 11);
    CHECK_EQ(d.u.suback.count, 0);
}

TEST(unsuback_v311_wrong_length_malformed)
{
    DECODE_ERR(CLI, 4, MQTT_RC_MALFORMED, 0xB0, 0x03, 0, 1, 0);
    DECODE_ERR(CLI, 3, MQTT_RC_MALFORMED, 0xB0, 0x01, 0);
}

TEST(unsuback_v5_roundtrip)
{
    static const uint8_t codes[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
    struct mqtt_packet in = {.type = MQTT_UNSUBACK}, out;
    in.u.suback.packet_id = 2;
    in.u.suback.codes = codes;
    in.u.suback.count = sizeof codes;
    fill_props(&in.u.suback.props, M_REASON);
    uint8_t buf[256];
    if (!roundtrip(&in, 5, CLI, &out, buf, sizeof buf))
        return;
    CHECK_EQ(out.u.suback.count, sizeof codes);
    CHECK_MEM(out.u.suback.codes, codes, sizeof codes);
    CHECK(props_eq(&out.u.suback.props, &in.u.suback.props));
}

TEST(unsuback_v5_invalid_code)
{
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0xB0, 0x04, 0, 1, 0, 0x01);
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0xB0, 0x03, 0, 1, 0);
}

/* ---- PINGREQ / PINGRESP ------------------------------------------------- */

TEST(ping_spec_bytes_and_roundtrip)
{
    for (uint8_t ver = 3; ver <= 5; ver++) {
        struct mqtt_packet in = {.type = MQTT_PINGREQ}, out;
        uint8_t buf[4];
        CHECK_EQ(mqtt_encode(&in, ver, buf, sizeof buf), 2);
        CHECK_EQ(buf[0], 0xC0);
        CHECK_EQ(buf[1], 0x00);
        roundtrip(&in, ver, SRV, &out, buf, sizeof buf);
        in.type = MQTT_PINGRESP;
        CHECK_EQ(mqtt_encode(&in, ver, buf, sizeof buf), 2);
        CHECK_EQ(buf[0], 0xD0);
        roundtrip(&in, ver, CLI, &out, buf, sizeof buf);
    }
}

TEST(ping_nonzero_length_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0xC0, 0x01, 0);
    DECODE_ERR(CLI, 4, MQTT_RC_MALFORMED, 0xD0, 0x01, 0);
}

/* ---- DISCONNECT / AUTH -------------------------------------------------- */

TEST(disconnect_v311_spec_bytes)
{
    struct mqtt_packet in = {.type = MQTT_DISCONNECT}, out;
    in.u.disconnect.reason = 0x80; /* no reason codes in 3.x: dropped */
    uint8_t buf[8];
    CHECK_EQ(mqtt_encode(&in, 4, buf, sizeof buf), 2);
    CHECK_EQ(buf[0], 0xE0);
    CHECK_EQ(buf[1], 0x00);
    in.u.disconnect.reason = 0;
    roundtrip(&in, 3, SRV, &out, buf, sizeof buf);
    roundtrip(&in, 4, SRV, &out, buf, sizeof buf);
}

TEST(disconnect_v311_nonzero_length_malformed)
{
    DECODE_ERR(SRV, 4, MQTT_RC_MALFORMED, 0xE0, 0x01, 0x00);
}

TEST(disconnect_v5_short_forms)
{
    struct mqtt_packet in = {.type = MQTT_DISCONNECT};
    uint8_t buf[8];
    CHECK_EQ(mqtt_encode(&in, 5, buf, sizeof buf), 2);
    in.u.disconnect.reason = 0x04;
    CHECK_EQ(mqtt_encode(&in, 5, buf, sizeof buf), 3);
    CHECK_EQ(buf[2], 0x04);
    struct mqtt_packet d;
    DECODE_OK(SRV, 5, &d, 0xE0, 0x01, 0x04);
    CHECK_EQ(d.u.disconnect.reason, 0x04);
    DECODE_OK(SRV, 5, &d, 0xE0, 0x00);
    CHECK_EQ(d.u.disconnect.reason, 0);
}

TEST(disconnect_v5_roundtrip_properties)
{
    struct mqtt_packet in = {.type = MQTT_DISCONNECT}, out;
    in.u.disconnect.reason = 0x8B;
    fill_props(&in.u.disconnect.props, M_DISCONNECT & ~B(MQTT_PROP_SESSION_EXPIRY));
    uint8_t buf[256];
    if (roundtrip(&in, 5, CLI, &out, buf, sizeof buf)) {
        CHECK_EQ(out.u.disconnect.reason, 0x8B);
        CHECK(props_eq(&out.u.disconnect.props, &in.u.disconnect.props));
    }
    in.u.disconnect.reason = 0x04;
    fill_props(&in.u.disconnect.props, M_DISCONNECT);
    if (roundtrip(&in, 5, SRV, &out, buf, sizeof buf)) {
        CHECK_EQ(out.u.disconnect.reason, 0x04);
        CHECK(props_eq(&out.u.disconnect.props, &in.u.disconnect.props));
    }
}

TEST(disconnect_v5_invalid_reason)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0xE0, 0x01, 0x18);
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0xE0, 0x01, 0x01);
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0xE0, 0x01, 0x91);
}

TEST(disconnect_v5_session_expiry_from_server)
{
    DECODE_ERR(CLI, 5, MQTT_RC_PROTOCOL_ERROR, 0xE0, 0x07, 0x00, 5, 0x11, 0, 0, 0, 1);
    struct mqtt_packet p;
    DECODE_OK(SRV, 5, &p, 0xE0, 0x07, 0x00, 5, 0x11, 0, 0, 0, 1);
    CHECK_EQ(p.u.disconnect.props.session_expiry, 1);
}

TEST(disconnect_v5_property_not_allowed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0xE0, 0x04, 0x00, 2, 0x24, 1);
}

TEST(disconnect_v5_trailing_bytes_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0xE0, 0x03, 0x00, 0x00, 0x00);
}

TEST(auth_v5_short_form)
{
    struct mqtt_packet in = {.type = MQTT_AUTH}, out;
    uint8_t buf[8];
    CHECK_EQ(mqtt_encode(&in, 5, buf, sizeof buf), 2);
    CHECK_EQ(buf[0], 0xF0);
    roundtrip(&in, 5, SRV, &out, buf, sizeof buf);
    roundtrip(&in, 5, CLI, &out, buf, sizeof buf);
}

TEST(auth_v5_roundtrip_properties)
{
    static const uint8_t codes[] = {0x00, 0x18, 0x19};
    for (size_t i = 0; i < 3; i++) {
        struct mqtt_packet in = {.type = MQTT_AUTH}, out;
        in.u.disconnect.reason = codes[i];
        fill_props(&in.u.disconnect.props, M_AUTH);
        uint8_t buf[256];
        if (!roundtrip(&in, 5, i & 1 ? CLI : SRV, &out, buf, sizeof buf))
            continue;
        CHECK_EQ(out.u.disconnect.reason, codes[i]);
        CHECK(props_eq(&out.u.disconnect.props, &in.u.disconnect.props));
    }
}

TEST(auth_reason_only_malformed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_MALFORMED, 0xF0, 0x01, 0x18);
}

TEST(auth_without_method)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0xF0, 0x02, 0x18, 0x00);
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0xF0, 0x06, 0x18, 4, 0x16, 0, 1, 0xAA);
}

TEST(auth_invalid_reason)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0xF0, 0x06, 0x01, 4, 0x15, 0, 1, 'm');
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0xF0, 0x06, 0x80, 4, 0x15, 0, 1, 'm');
}

TEST(auth_property_not_allowed)
{
    DECODE_ERR(SRV, 5, MQTT_RC_PROTOCOL_ERROR, 0xF0, 0x08, 0x18, 6, 0x15, 0, 1, 'm', 0x17, 1);
}

TEST(auth_encode_v311_rejected)
{
    struct mqtt_packet in = {.type = MQTT_AUTH};
    uint8_t buf[8];
    CHECK_EQ(mqtt_encode(&in, 4, buf, sizeof buf), 0);
    CHECK_EQ(mqtt_encoded_len(&in, 3), 0);
}

/* ---- encoder generic ---------------------------------------------------- */

TEST(encode_cap_too_small)
{
    struct mqtt_packet p = {.type = MQTT_PUBLISH};
    p.u.publish.topic = BS("topic");
    p.u.publish.payload = BS("payload");
    uint8_t buf[64];
    size_t n = mqtt_encoded_len(&p, 4);
    CHECK_EQ(n, 16);
    CHECK_EQ(mqtt_encode(&p, 4, buf, n - 1), 0);
    CHECK_EQ(mqtt_encode(&p, 4, buf, n), n);
}

TEST(encode_unknown_version_or_type_rejected)
{
    struct mqtt_packet p = {.type = MQTT_PINGREQ};
    uint8_t buf[8];
    CHECK_EQ(mqtt_encode(&p, 6, buf, sizeof buf), 0);
    CHECK_EQ(mqtt_encode(&p, 0, buf, sizeof buf), 0);
    p.type = 0;
    CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), 0);
    p.type = 16;
    CHECK_EQ(mqtt_encode(&p, 4, buf, sizeof buf), 0);
}

TEST(encode_string_too_long_rejected)
{
    static uint8_t big[70000];
    struct mqtt_packet p = {.type = MQTT_PUBLISH};
    p.u.publish.topic.ptr = big;
    p.u.publish.topic.len = 65536;
    CHECK_EQ(mqtt_encoded_len(&p, 4), 0);
    p.u.publish.topic = BS("t");
    mqtt_props_set(&p.u.publish.props, MQTT_PROP_CONTENT_TYPE);
    p.u.publish.props.content_type.ptr = big;
    p.u.publish.props.content_type.len = 65536;
    CHECK_EQ(mqtt_encoded_len(&p, 5), 0);
    CHECK_EQ(mqtt_encoded_len(&p, 4), 1 + 1 + 3); /* 3.x ignores properties */
}

TEST(encode_large_payload_four_byte_length)
{
    size_t plen = 2097152;
    uint8_t *payload = calloc(1, plen);
    uint8_t *buf = malloc(plen + 64);
    if (!payload || !buf) {
        free(payload);
        free(buf);
        CHECK(!"allocation failed");
        return;
    }
    struct mqtt_packet in = {.type = MQTT_PUBLISH}, out;
    in.u.publish.topic = BS("big");
    in.u.publish.payload.ptr = payload;
    in.u.publish.payload.len = (uint32_t)plen;
    size_t n = mqtt_encode(&in, 4, buf, plen + 64);
    CHECK_EQ(n, 1 + 4 + 5 + plen);
    CHECK_EQ(buf[1] & 0x80, 0x80);
    CHECK_EQ(buf[4], 0x01);
    uint8_t r;
    CHECK_EQ(decode_buf(buf, n, SRV, 4, &out, &r), ST_OK);
    CHECK_EQ(out.u.publish.payload.len, plen);
    free(payload);
    free(buf);
}

int main(void)
{
    RUN(varint_encode_boundaries);
    RUN(varint_encode_rejects_too_large);
    RUN(varint_encode_rejects_small_cap);
    RUN(varint_decode_incomplete_needs_more);
    RUN(varint_decode_fifth_byte_is_malformed);
    RUN(varint_decode_non_minimal_accepted);
    RUN(decode_empty_buffer_needs_more);
    RUN(decode_incomplete_remaining_length_needs_more);
    RUN(decode_remaining_length_fifth_byte_malformed);
    RUN(decode_packet_type_zero_malformed);
    RUN(decode_auth_type_in_v311_malformed);
    RUN(decode_reserved_flags_malformed);
    RUN(decode_pubrel_flags_must_be_0010);
    RUN(decode_subscribe_flags_must_be_0010);
    RUN(decode_unsubscribe_flags_must_be_0010);
    RUN(decode_publish_qos3_malformed);
    RUN(decode_publish_dup_at_qos0_malformed);
    RUN(decode_server_rejects_server_packets);
    RUN(decode_client_rejects_client_packets);
    RUN(decode_client_v311_rejects_disconnect);
    RUN(decode_packet_too_large_before_body);
    RUN(decode_packet_exactly_max_size_ok);
    RUN(decode_default_max_allows_largest_packet);
    RUN(decode_two_packets_back_to_back);
    RUN(decode_incremental_one_byte_at_a_time);
    RUN(connect_v311_spec_bytes);
    RUN(connect_v31_spec_bytes);
    RUN(connect_roundtrip_v31);
    RUN(connect_roundtrip_v311);
    RUN(connect_roundtrip_v5_all_properties);
    RUN(connect_minimal_v5_no_props);
    RUN(connect_unknown_level_unsupported_version);
    RUN(connect_mqtt_name_with_level3_unsupported);
    RUN(connect_mqisdp_with_level4_unsupported);
    RUN(connect_wrong_protocol_name_unsupported);
    RUN(connect_truncated_protocol_name_malformed);
    RUN(connect_reserved_flag_malformed);
    RUN(connect_will_qos3_malformed);
    RUN(connect_will_qos_without_will_flag_malformed);
    RUN(connect_will_retain_without_will_flag_malformed);
    RUN(connect_password_without_username_v311_malformed);
    RUN(connect_password_without_username_v5_allowed);
    RUN(connect_encode_password_without_username_v311_rejected);
    RUN(connect_client_id_invalid_utf8_malformed);
    RUN(connect_username_invalid_utf8_malformed);
    RUN(connect_will_topic_wildcard_invalid);
    RUN(connect_will_topic_empty_invalid);
    RUN(connect_will_topic_invalid_utf8_malformed);
    RUN(connect_will_payload_format_invalid);
    RUN(connect_will_payload_format_utf8_with_nul_ok);
    RUN(connect_will_property_not_allowed);
    RUN(connect_will_props_duplicate_protocol_error);
    RUN(connect_trailing_bytes_malformed);
    RUN(connect_truncated_payload_malformed);
    RUN(connect_property_not_allowed);
    RUN(connect_property_duplicate_protocol_error);
    RUN(connect_user_property_may_repeat);
    RUN(props_boolean_byte_out_of_range);
    RUN(props_receive_maximum_zero);
    RUN(props_maximum_packet_size_zero);
    RUN(props_unknown_id_malformed);
    RUN(props_value_truncated_malformed);
    RUN(props_length_past_packet_malformed);
    RUN(props_string_invalid_utf8_malformed);
    RUN(props_auth_data_without_method);
    RUN(props_binary_data_not_utf8_checked);
    RUN(props_interleaved_user_props_iterate_and_reencode);
    RUN(props_len_and_encode_agree);
    RUN(props_encode_exact_bytes);
    RUN(user_prop_append_overflow);
    RUN(user_props_next_stops_on_garbage);
    RUN(connack_v311_spec_bytes);
    RUN(connack_v31_reserved_byte);
    RUN(connack_v311_bad_return_code_malformed);
    RUN(connack_v311_reserved_flags_malformed);
    RUN(connack_v311_wrong_length_malformed);
    RUN(connack_session_present_with_failure);
    RUN(connack_v5_roundtrip_all_properties);
    RUN(connack_v5_failure_codes_roundtrip);
    RUN(connack_v5_invalid_reason_code);
    RUN(connack_v5_missing_property_length_malformed);
    RUN(connack_v5_property_rules);
    RUN(connack_v5_trailing_bytes_malformed);
    RUN(publish_v311_spec_bytes);
    RUN(publish_v5_spec_bytes_short);
    RUN(publish_roundtrip_v31_all_qos);
    RUN(publish_roundtrip_v311_all_qos);
    RUN(publish_roundtrip_v5_all_properties);
    RUN(publish_roundtrip_v5_to_client_with_subscription_ids);
    RUN(publish_empty_payload);
    RUN(publish_topic_wildcard_invalid);
    RUN(publish_topic_invalid_utf8_malformed);
    RUN(publish_topic_length_past_packet_malformed);
    RUN(publish_empty_topic_without_alias);
    RUN(publish_empty_topic_with_alias_v5);
    RUN(publish_packet_id_zero);
    RUN(publish_packet_id_truncated_malformed);
    RUN(publish_v5_missing_property_length_malformed);
    RUN(publish_topic_alias_zero);
    RUN(publish_response_topic_wildcard);
    RUN(publish_subscription_id_from_client_not_allowed);
    RUN(publish_subscription_id_zero);
    RUN(publish_subscription_id_varint_malformed);
    RUN(publish_many_subscription_ids_keeps_first_eight);
    RUN(publish_payload_format_invalid_utf8);
    RUN(publish_payload_format_valid_utf8);
    RUN(publish_binary_payload_unchecked);
    RUN(publish_property_duplicate);
    RUN(publish_property_not_allowed);
    RUN(publish_content_type_invalid_utf8_malformed);
    RUN(publish_header_matches_full_encode);
    RUN(publish_encode_rejects_invalid);
    RUN(ack_v311_spec_bytes);
    RUN(ack_roundtrip_all_versions_both_roles);
    RUN(ack_v5_short_form_when_success_without_props);
    RUN(ack_v5_roundtrip_reason_and_properties);
    RUN(ack_v5_reason_without_properties_decodes);
    RUN(ack_v5_invalid_reason_for_type);
    RUN(ack_packet_id_zero);
    RUN(ack_v311_wrong_length_malformed);
    RUN(ack_v5_property_not_allowed);
    RUN(ack_v5_trailing_bytes_malformed);
    RUN(subscribe_v311_spec_bytes);
    RUN(subscribe_roundtrip_v31);
    RUN(subscribe_roundtrip_v311);
    RUN(subscribe_roundtrip_v5_options_and_properties);
    RUN(subscribe_no_filters);
    RUN(subscribe_packet_id_zero);
    RUN(subscribe_v311_reserved_option_bits_malformed);
    RUN(subscribe_v5_reserved_option_bits_malformed);
    RUN(subscribe_v5_retain_handling_3);
    RUN(subscribe_v5_qos_3);
    RUN(subscribe_v5_malformed_beats_protocol_error);
    RUN(subscribe_invalid_filter_is_left_to_broker);
    RUN(subscribe_no_local_on_shared_left_to_broker);
    RUN(subscribe_filter_invalid_utf8_malformed);
    RUN(subscribe_missing_options_byte_malformed);
    RUN(subscribe_filter_length_past_packet_malformed);
    RUN(subscribe_subscription_id_rules);
    RUN(subscribe_property_not_allowed);
    RUN(sub_list_append_limits);
    RUN(sub_opts_byte_encoding);
    RUN(sub_next_stops_on_truncated_list);
    RUN(subscribe_encode_empty_list_rejected);
    RUN(unsubscribe_roundtrip_v31);
    RUN(unsubscribe_roundtrip_v311);
    RUN(unsubscribe_roundtrip_v5);
    RUN(unsubscribe_no_filters);
    RUN(unsubscribe_filter_invalid_utf8_malformed);
    RUN(unsubscribe_property_not_allowed);
    RUN(unsubscribe_truncated_filter_malformed);
    RUN(suback_v311_spec_bytes);
    RUN(suback_v5_roundtrip_all_codes_and_properties);
    RUN(suback_roundtrip_v31);
    RUN(suback_invalid_code);
    RUN(suback_no_codes);
    RUN(suback_packet_id_zero);
    RUN(suback_property_not_allowed);
    RUN(unsuback_v311_spec_bytes);
    RUN(unsuback_v311_wrong_length_malformed);
    RUN(unsuback_v5_roundtrip);
    RUN(unsuback_v5_invalid_code);
    RUN(ping_spec_bytes_and_roundtrip);
    RUN(ping_nonzero_length_malformed);
    RUN(disconnect_v311_spec_bytes);
    RUN(disconnect_v311_nonzero_length_malformed);
    RUN(disconnect_v5_short_forms);
    RUN(disconnect_v5_roundtrip_properties);
    RUN(disconnect_v5_invalid_reason);
    RUN(disconnect_v5_session_expiry_from_server);
    RUN(disconnect_v5_property_not_allowed);
    RUN(disconnect_v5_trailing_bytes_malformed);
    RUN(auth_v5_short_form);
    RUN(auth_v5_roundtrip_properties);
    RUN(auth_reason_only_malformed);
    RUN(auth_without_method);
    RUN(auth_invalid_reason);
    RUN(auth_property_not_allowed);
    RUN(auth_encode_v311_rejected);
    RUN(encode_cap_too_small);
    RUN(encode_unknown_version_or_type_rejected);
    RUN(encode_string_too_long_rejected);
    RUN(encode_large_payload_four_byte_length);
    return test_report();
}
