/* fuzz_codec.c - libFuzzer target for the MQTT codec.
 *
 * Decodes the input as server and client, in every version, with and
 * without a small maximum packet size. Every packet that decodes must
 * re-encode (mqtt_encode, with mqtt_encoded_len agreeing), decode again to
 * the same fields, and re-encode to the same bytes; its prefixes must ask
 * for more input; its lists and user properties must iterate cleanly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                              \
    do {                                                                        \
        if (!(c))                                                               \
            abort();                                                            \
    } while (0)

static bool bytes_eq(struct mqtt_bytes a, struct mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static uint32_t walk_user_props(const struct mqtt_props *p)
{
    uint32_t pos = 0, n = 0;
    struct mqtt_bytes k, v;
    while (mqtt_user_props_next(&p->user_props, &pos, &k, &v)) {
        REQUIRE(k.ptr >= p->user_props.ptr);
        REQUIRE(v.ptr + v.len <= p->user_props.ptr + p->user_props.len);
        n++;
    }
    REQUIRE(pos == p->user_props.len);
    return n;
}

static void check_props(const struct mqtt_props *a, const struct mqtt_props *b)
{
    REQUIRE(a->present == b->present);
    REQUIRE(walk_user_props(a) == a->user_prop_count);
    REQUIRE(walk_user_props(b) == b->user_prop_count);
    REQUIRE(a->user_prop_count == b->user_prop_count);
    uint32_t pa = 0, pb = 0;
    struct mqtt_bytes ka, va, kb, vb;
    while (mqtt_user_props_next(&a->user_props, &pa, &ka, &va)) {
        REQUIRE(mqtt_user_props_next(&b->user_props, &pb, &kb, &vb));
        REQUIRE(bytes_eq(ka, kb) && bytes_eq(va, vb));
    }
    /* Only the first 8 subscription ids survive a re-encode. */
    uint32_t n = a->sub_id_count > 8 ? 8 : a->sub_id_count;
    REQUIRE(b->sub_id_count == n);
    for (uint32_t i = 0; i < n; i++)
        REQUIRE(a->sub_ids[i] == b->sub_ids[i]);
    REQUIRE(a->payload_format == b->payload_format);
    REQUIRE(a->message_expiry == b->message_expiry);
    REQUIRE(a->session_expiry == b->session_expiry);
    REQUIRE(a->will_delay == b->will_delay);
    REQUIRE(a->max_packet_size == b->max_packet_size);
    REQUIRE(a->receive_max == b->receive_max);
    REQUIRE(a->topic_alias == b->topic_alias);
    REQUIRE(a->topic_alias_max == b->topic_alias_max);
    REQUIRE(a->server_keepalive == b->server_keepalive);
    REQUIRE(a->max_qos == b->max_qos);
    REQUIRE(a->retain_available == b->retain_available);
    REQUIRE(a->request_problem_info == b->request_problem_info);
    REQUIRE(a->request_response_info == b->request_response_info);
    REQUIRE(a->wildcard_sub_available == b->wildcard_sub_available);
    REQUIRE(a->sub_id_available == b->sub_id_available);
    REQUIRE(a->shared_sub_available == b->shared_sub_available);
    REQUIRE(bytes_eq(a->content_type, b->content_type));
    REQUIRE(bytes_eq(a->response_topic, b->response_topic));
    REQUIRE(bytes_eq(a->correlation_data, b->correlation_data));
    REQUIRE(bytes_eq(a->assigned_client_id, b->assigned_client_id));
    REQUIRE(bytes_eq(a->auth_method, b->auth_method));
    REQUIRE(bytes_eq(a->auth_data, b->auth_data));
    REQUIRE(bytes_eq(a->response_info, b->response_info));
    REQUIRE(bytes_eq(a->server_reference, b->server_reference));
    REQUIRE(bytes_eq(a->reason_string, b->reason_string));
}

static void check_list(const struct mqtt_packet *p)
{
    const struct mqtt_subscribe *s = &p->u.subscribe;
    uint32_t pos = 0, n = 0;
    struct mqtt_bytes f;
    struct mqtt_sub_opts o;
    if (p->type == MQTT_SUBSCRIBE) {
        while (mqtt_sub_next(s, &pos, &f, &o)) {
            REQUIRE(o.qos < 3 && o.retain_handling < 3);
            n++;
        }
    } else {
        while (mqtt_unsub_next(s, &pos, &f))
            n++;
    }
    REQUIRE(n == s->count && pos == s->list.len);
}

static void check_same(const struct mqtt_packet *a, const struct mqtt_packet *b)
{
    REQUIRE(a->type == b->type);
    switch (a->type) {
    case MQTT_CONNECT: {
        const struct mqtt_connect *x = &a->u.connect, *y = &b->u.connect;
        REQUIRE(x->version == y->version && x->clean_start == y->clean_start);
        REQUIRE(x->will_flag == y->will_flag && x->will_qos == y->will_qos);
        REQUIRE(x->will_retain == y->will_retain && x->keepalive == y->keepalive);
        REQUIRE(x->has_username == y->has_username && x->has_password == y->has_password);
        REQUIRE(bytes_eq(x->client_id, y->client_id));
        REQUIRE(bytes_eq(x->will_topic, y->will_topic));
        REQUIRE(bytes_eq(x->will_payload, y->will_payload));
        REQUIRE(bytes_eq(x->username, y->username));
        REQUIRE(bytes_eq(x->password, y->password));
        check_props(&x->props, &y->props);
        check_props(&x->will_props, &y->will_props);
        break;
    }
    case MQTT_CONNACK:
        REQUIRE(a->u.connack.session_present == b->u.connack.session_present);
        REQUIRE(a->u.connack.code == b->u.connack.code);
        check_props(&a->u.connack.props, &b->u.connack.props);
        break;
    case MQTT_PUBLISH: {
        const struct mqtt_publish *x = &a->u.publish, *y = &b->u.publish;
        REQUIRE(a->flags == b->flags);
        REQUIRE(x->qos == y->qos && x->dup == y->dup && x->retain == y->retain);
        REQUIRE(x->packet_id == y->packet_id);
        REQUIRE(bytes_eq(x->topic, y->topic) && bytes_eq(x->payload, y->payload));
        check_props(&x->props, &y->props);
        break;
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        REQUIRE(a->u.ack.packet_id == b->u.ack.packet_id);
        REQUIRE(a->u.ack.reason == b->u.ack.reason);
        check_props(&a->u.ack.props, &b->u.ack.props);
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        REQUIRE(a->u.subscribe.packet_id == b->u.subscribe.packet_id);
        REQUIRE(a->u.subscribe.count == b->u.subscribe.count);
        REQUIRE(bytes_eq(a->u.subscribe.list, b->u.subscribe.list));
        check_props(&a->u.subscribe.props, &b->u.subscribe.props);
        check_list(a);
        check_list(b);
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        REQUIRE(a->u.suback.packet_id == b->u.suback.packet_id);
        REQUIRE(a->u.suback.count == b->u.suback.count);
        REQUIRE(a->u.suback.count == 0 ||
                memcmp(a->u.suback.codes, b->u.suback.codes, a->u.suback.count) == 0);
        check_props(&a->u.suback.props, &b->u.suback.props);
        break;
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        REQUIRE(a->u.disconnect.reason == b->u.disconnect.reason);
        check_props(&a->u.disconnect.props, &b->u.disconnect.props);
        break;
    default:
        break;
    }
}

static uint8_t out1[1 << 17], out2[1 << 17];

static void roundtrip(const uint8_t *data, const struct mqtt_packet *p, size_t consumed,
                      const struct mqtt_decoder_opts *o)
{
    uint8_t ver = p->type == MQTT_CONNECT ? p->u.connect.version : o->version;
    size_t len = mqtt_encoded_len(p, ver);
    REQUIRE(len > 0 && len <= consumed && len <= sizeof out1);
    size_t n = mqtt_encode(p, ver, out1, sizeof out1);
    REQUIRE(n == len);
    REQUIRE(mqtt_encode(p, ver, out2, n - 1) == 0);

    struct mqtt_decoder_opts o2 = *o;
    o2.max_packet_size = 0;
    struct mqtt_packet q;
    size_t c;
    uint8_t r;
    REQUIRE(mqtt_decode(out1, n, &o2, &q, &c, &r) == MQTT_DECODE_OK);
    REQUIRE(c == n);
    check_same(p, &q);

    /* Re-encoding the re-decoded packet is a fixed point. */
    size_t n2 = mqtt_encode(&q, ver, out2, sizeof out2);
    REQUIRE(n2 == n && memcmp(out1, out2, n) == 0);

    if (p->type == MQTT_PUBLISH) {
        size_t h = mqtt_encode_publish_header(&p->u.publish, ver, out2, sizeof out2);
        REQUIRE(h > 0 && h + p->u.publish.payload.len == n);
        REQUIRE(memcmp(out1, out2, h) == 0);
    }
    (void)data;
}

static void one(const uint8_t *data, size_t size, enum mqtt_role role, uint8_t ver,
                uint32_t max)
{
    struct mqtt_decoder_opts o = {role, ver, max};
    struct mqtt_packet p;
    size_t c = 12345;
    uint8_t r = 0xEE;
    int st = mqtt_decode(data, size, &o, &p, &c, &r);
    if (st != MQTT_DECODE_OK) {
        REQUIRE(c == 0);
        REQUIRE(st == MQTT_DECODE_MORE ? r == 0 : r >= 0x80);
        if (ver != MQTT_V5 && st == MQTT_DECODE_ERROR && !(data[0] >> 4 == MQTT_CONNECT))
            REQUIRE(r == MQTT_RC_MALFORMED || r == MQTT_RC_PACKET_TOO_LARGE);
        return;
    }
    REQUIRE(r == 0 && c >= 2 && c <= size);
    REQUIRE(max == 0 || c <= max);
    /* Every strict prefix is incomplete. */
    struct mqtt_packet tmp;
    size_t c2;
    uint8_t r2;
    REQUIRE(mqtt_decode(data, c - 1, &o, &tmp, &c2, &r2) == MQTT_DECODE_MORE);
    REQUIRE(mqtt_decode(data, c / 2, &o, &tmp, &c2, &r2) == MQTT_DECODE_MORE);
    if (p.type == MQTT_SUBSCRIBE || p.type == MQTT_UNSUBSCRIBE)
        check_list(&p);
    roundtrip(data, &p, c, &o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int role = 0; role < 2; role++)
        for (uint8_t ver = MQTT_V31; ver <= MQTT_V5; ver++) {
            one(data, size, (enum mqtt_role)role, ver, 0);
            one(data, size, (enum mqtt_role)role, ver, 64);
        }
    /* A stream: keep decoding packets after the first (server, 5.0). */
    struct mqtt_decoder_opts o = {MQTT_ROLE_SERVER, MQTT_V5, 0};
    size_t off = 0, c;
    struct mqtt_packet p;
    uint8_t r;
    while (off < size && mqtt_decode(data + off, size - off, &o, &p, &c, &r) == MQTT_DECODE_OK)
        off += c;
    return 0;
}
