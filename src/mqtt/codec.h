/* codec.h - MQTT 3.1, 3.1.1 and 5.0 packet codec, sans I/O.
 *
 * The decoder turns bytes into packet views that point into the caller's
 * buffer (no copies, no allocation) and validates everything that can be
 * checked from one packet alone: lengths, varints, flags, UTF-8, topic names
 * and filters, properties (allowed in this packet, not duplicated, values in
 * range). Rules that need session state (topic alias range, receive maximum,
 * packet-id reuse) belong to the broker.
 *
 * The encoder writes packets into caller memory from the same structures.
 * Nothing here knows about sockets, sessions or time.
 */
#ifndef PETREL_MQTT_CODEC_H
#define PETREL_MQTT_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

enum mqtt_version {
    MQTT_V31 = 3,  /* "MQIsdp", protocol level 3 */
    MQTT_V311 = 4, /* "MQTT", level 4 */
    MQTT_V5 = 5,   /* "MQTT", level 5 */
};

enum mqtt_type {
    MQTT_CONNECT = 1, MQTT_CONNACK, MQTT_PUBLISH, MQTT_PUBACK, MQTT_PUBREC,
    MQTT_PUBREL, MQTT_PUBCOMP, MQTT_SUBSCRIBE, MQTT_SUBACK, MQTT_UNSUBSCRIBE,
    MQTT_UNSUBACK, MQTT_PINGREQ, MQTT_PINGRESP, MQTT_DISCONNECT, MQTT_AUTH,
};

/* MQTT 5 reason codes (also used internally as the error vocabulary of the
 * decoder; 3.x callers map them to a closed connection or a 3.x return code). */
enum mqtt_rc {
    MQTT_RC_SUCCESS = 0x00,            /* also Normal disconnection, Granted QoS 0 */
    MQTT_RC_GRANTED_QOS1 = 0x01,
    MQTT_RC_GRANTED_QOS2 = 0x02,
    MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    MQTT_RC_CONTINUE_AUTH = 0x18,
    MQTT_RC_REAUTHENTICATE = 0x19,
    MQTT_RC_UNSPECIFIED = 0x80,
    MQTT_RC_MALFORMED = 0x81,
    MQTT_RC_PROTOCOL_ERROR = 0x82,
    MQTT_RC_IMPL_SPECIFIC = 0x83,
    MQTT_RC_UNSUPPORTED_VERSION = 0x84,
    MQTT_RC_CLIENT_ID_INVALID = 0x85,
    MQTT_RC_BAD_USER_OR_PASSWORD = 0x86,
    MQTT_RC_NOT_AUTHORIZED = 0x87,
    MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    MQTT_RC_SERVER_BUSY = 0x89,
    MQTT_RC_BANNED = 0x8A,
    MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    MQTT_RC_BAD_AUTH_METHOD = 0x8C,
    MQTT_RC_KEEPALIVE_TIMEOUT = 0x8D,
    MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    MQTT_RC_PACKET_ID_IN_USE = 0x91,
    MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
    MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    MQTT_RC_PACKET_TOO_LARGE = 0x95,
    MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    MQTT_RC_QUOTA_EXCEEDED = 0x97,
    MQTT_RC_ADMIN_ACTION = 0x98,
    MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
    MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
    MQTT_RC_SERVER_MOVED = 0x9D,
    MQTT_RC_SHARED_SUB_NOT_SUPPORTED = 0x9E,
    MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    MQTT_RC_MAX_CONNECT_TIME = 0xA0,
    MQTT_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
    MQTT_RC_WILDCARD_SUB_NOT_SUPPORTED = 0xA2,
};

/* MQTT 3.1 / 3.1.1 CONNACK return codes. */
enum mqtt_connack3 {
    MQTT3_ACCEPTED = 0,
    MQTT3_REFUSED_VERSION = 1,
    MQTT3_REFUSED_IDENTIFIER = 2,
    MQTT3_REFUSED_UNAVAILABLE = 3,
    MQTT3_REFUSED_BAD_CREDENTIALS = 4,
    MQTT3_REFUSED_NOT_AUTHORIZED = 5,
};

/* Property identifiers (MQTT 5 section 2.2.2.2). */
enum mqtt_prop_id {
    MQTT_PROP_PAYLOAD_FORMAT = 0x01,
    MQTT_PROP_MESSAGE_EXPIRY = 0x02,
    MQTT_PROP_CONTENT_TYPE = 0x03,
    MQTT_PROP_RESPONSE_TOPIC = 0x08,
    MQTT_PROP_CORRELATION_DATA = 0x09,
    MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
    MQTT_PROP_SESSION_EXPIRY = 0x11,
    MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
    MQTT_PROP_SERVER_KEEPALIVE = 0x13,
    MQTT_PROP_AUTH_METHOD = 0x15,
    MQTT_PROP_AUTH_DATA = 0x16,
    MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
    MQTT_PROP_WILL_DELAY = 0x18,
    MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
    MQTT_PROP_RESPONSE_INFO = 0x1A,
    MQTT_PROP_SERVER_REFERENCE = 0x1C,
    MQTT_PROP_REASON_STRING = 0x1F,
    MQTT_PROP_RECEIVE_MAX = 0x21,
    MQTT_PROP_TOPIC_ALIAS_MAX = 0x22,
    MQTT_PROP_TOPIC_ALIAS = 0x23,
    MQTT_PROP_MAX_QOS = 0x24,
    MQTT_PROP_RETAIN_AVAILABLE = 0x25,
    MQTT_PROP_USER_PROPERTY = 0x26,
    MQTT_PROP_MAX_PACKET_SIZE = 0x27,
    MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
    MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
    MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

/* A view of bytes: into the decoded buffer, or caller memory when encoding. */
struct mqtt_bytes {
    const uint8_t *ptr;
    uint32_t len;
};

/* Presence bits for struct mqtt_props.present: 1u << prop_bit(id).
 * Use mqtt_props_has() / mqtt_props_set() rather than the bits directly. */
struct mqtt_props {
    uint64_t present; /* bit (id) set when property id is present */
    uint8_t payload_format, request_problem_info, request_response_info;
    uint8_t max_qos, retain_available, wildcard_sub_available;
    uint8_t sub_id_available, shared_sub_available;
    uint16_t server_keepalive, receive_max, topic_alias_max, topic_alias;
    uint32_t message_expiry, session_expiry, will_delay, max_packet_size;
    /* Subscription identifiers: a SUBSCRIBE carries at most one; a PUBLISH
     * to a client may carry several (decoder keeps the first 8 and the count). */
    uint32_t sub_ids[8];
    uint32_t sub_id_count;
    struct mqtt_bytes content_type, response_topic, correlation_data;
    struct mqtt_bytes assigned_client_id, auth_method, auth_data;
    struct mqtt_bytes response_info, server_reference, reason_string;
    /* User properties, as their encoded wire bytes (each 0x26, key, value),
     * in order. Iterate with mqtt_user_props_next(). On encode, copied as is. */
    struct mqtt_bytes user_props;
    uint32_t user_prop_count;
};

static inline bool mqtt_props_has(const struct mqtt_props *p, enum mqtt_prop_id id)
{
    return (p->present >> id) & 1u;
}
static inline void mqtt_props_set(struct mqtt_props *p, enum mqtt_prop_id id)
{
    p->present |= (uint64_t)1 << id;
}

/* Iterate user properties: *pos starts at 0; returns false at the end. */
bool mqtt_user_props_next(const struct mqtt_bytes *user_props, uint32_t *pos,
                          struct mqtt_bytes *key, struct mqtt_bytes *value);

struct mqtt_connect {
    uint8_t version;         /* enum mqtt_version */
    bool clean_start;        /* clean session in 3.x */
    bool will_flag, will_retain;
    uint8_t will_qos;
    bool has_username, has_password;
    uint16_t keepalive;
    struct mqtt_bytes client_id;
    struct mqtt_bytes will_topic, will_payload;
    struct mqtt_bytes username, password;
    struct mqtt_props props;      /* CONNECT properties (5.0) */
    struct mqtt_props will_props; /* will properties (5.0) */
};

struct mqtt_connack {
    bool session_present;
    uint8_t code; /* 3.x return code or 5.0 reason code */
    struct mqtt_props props;
};

struct mqtt_publish {
    uint8_t qos;
    bool dup, retain;
    uint16_t packet_id;     /* 0 at QoS 0 */
    struct mqtt_bytes topic; /* may be empty in 5.0 when a topic alias is used */
    struct mqtt_bytes payload;
    struct mqtt_props props;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP */
struct mqtt_ack {
    uint16_t packet_id;
    uint8_t reason; /* 0 when absent */
    struct mqtt_props props;
};

/* Subscription options byte (MQTT 5 section 3.8.3.1); 3.x uses only qos. */
struct mqtt_sub_opts {
    uint8_t qos;
    bool no_local, retain_as_published;
    uint8_t retain_handling; /* 0, 1 or 2 */
};

/* SUBSCRIBE and UNSUBSCRIBE. The topic filter list is validated by the
 * decoder; iterate it with mqtt_sub_next() / mqtt_unsub_next(). */
struct mqtt_subscribe {
    uint16_t packet_id;
    uint32_t count;        /* number of filters, at least 1 */
    struct mqtt_bytes list; /* raw payload */
    struct mqtt_props props;
};

/* Iterate a decoded SUBSCRIBE: *pos starts at 0; returns false at the end. */
bool mqtt_sub_next(const struct mqtt_subscribe *s, uint32_t *pos,
                   struct mqtt_bytes *filter, struct mqtt_sub_opts *opts);
/* Iterate a decoded UNSUBSCRIBE (same struct, filters only). */
bool mqtt_unsub_next(const struct mqtt_subscribe *s, uint32_t *pos,
                     struct mqtt_bytes *filter);

/* SUBACK and UNSUBACK: one reason code per filter (5.0 UNSUBACK has them;
 * 3.x UNSUBACK has none, count = 0). */
struct mqtt_suback {
    uint16_t packet_id;
    uint32_t count;
    const uint8_t *codes;
    struct mqtt_props props;
};

/* DISCONNECT and AUTH */
struct mqtt_disconnect {
    uint8_t reason;
    struct mqtt_props props;
};

struct mqtt_packet {
    uint8_t type;  /* enum mqtt_type */
    uint8_t flags; /* low nibble of the fixed header */
    union {
        struct mqtt_connect connect;
        struct mqtt_connack connack;
        struct mqtt_publish publish;
        struct mqtt_ack ack;
        struct mqtt_subscribe subscribe; /* SUBSCRIBE and UNSUBSCRIBE */
        struct mqtt_suback suback;       /* SUBACK and UNSUBACK */
        struct mqtt_disconnect disconnect; /* DISCONNECT and AUTH */
    } u;
};

enum mqtt_decode_status {
    MQTT_DECODE_OK = 0,     /* one packet decoded, *consumed bytes used */
    MQTT_DECODE_MORE = 1,   /* incomplete: read more bytes and call again */
    MQTT_DECODE_ERROR = -1, /* invalid: *reason says why (enum mqtt_rc) */
};

/* Which side of the connection decodes: a server accepts only packets a
 * client may send (CONNECT, PUBLISH, PUBACK..., SUBSCRIBE, UNSUBSCRIBE,
 * PINGREQ, DISCONNECT, AUTH), a client only the server's. */
enum mqtt_role { MQTT_ROLE_SERVER, MQTT_ROLE_CLIENT };

struct mqtt_decoder_opts {
    enum mqtt_role role;
    uint8_t version;          /* negotiated version; ignored for CONNECT */
    uint32_t max_packet_size; /* whole packet incl. fixed header; 0 = 268435460 */
};

/* Decode one packet from buf[0..len).
 * OK: *out points into buf, *consumed = whole packet length.
 * MORE: need more bytes; *consumed = 0. Returns ERROR with
 * MQTT_RC_PACKET_TOO_LARGE as soon as the fixed header announces a packet
 * larger than opts->max_packet_size, before the body has arrived.
 * ERROR: *reason is MALFORMED, PROTOCOL_ERROR, PACKET_TOO_LARGE,
 * UNSUPPORTED_VERSION (CONNECT with unknown name/level), TOPIC_NAME_INVALID,
 * TOPIC_FILTER_INVALID, PAYLOAD_FORMAT_INVALID, ... */
enum mqtt_decode_status mqtt_decode(const uint8_t *buf, size_t len,
                                    const struct mqtt_decoder_opts *opts,
                                    struct mqtt_packet *out, size_t *consumed,
                                    uint8_t *reason);

/* Encode a whole packet into out[0..cap). Returns the length written, or 0
 * if cap is too small (nothing useful written) or the packet is invalid for
 * the version (e.g. properties on 3.x are silently omitted, not an error).
 * For PUBLISH, the payload is copied after the header. */
size_t mqtt_encode(const struct mqtt_packet *p, uint8_t version,
                   uint8_t *out, size_t cap);

/* The exact encoded length of p (what mqtt_encode would write). */
size_t mqtt_encoded_len(const struct mqtt_packet *p, uint8_t version);

/* Encode everything of a PUBLISH except the payload (fixed header with the
 * full remaining length, topic, packet id, properties), so the payload can be
 * sent from shared memory with writev. Returns header length or 0 if cap is
 * too small. MQTT_PUBLISH_HEADER_MAX is enough for any topic under 64 KiB
 * plus properties under 64 KiB. */
size_t mqtt_encode_publish_header(const struct mqtt_publish *p, uint8_t version,
                                  uint8_t *out, size_t cap);

/* Properties: encoded length of the property block (without its length
 * varint), and encode with its varint length prefix. Only properties
 * present are written; user properties are copied from props->user_props. */
size_t mqtt_props_len(const struct mqtt_props *props);
size_t mqtt_props_encode(const struct mqtt_props *props, uint8_t *out, size_t cap);

/* Variable byte integer. encode returns bytes written (1..4), or 0 if
 * v > 268435455 or cap too small. decode returns bytes used (1..4), 0 if
 * more bytes are needed, -1 if malformed (a fifth byte, or non-minimal is
 * NOT an error by the spec). */
size_t mqtt_varint_encode(uint32_t v, uint8_t *out, size_t cap);
int mqtt_varint_decode(const uint8_t *buf, size_t len, uint32_t *v);
static inline size_t mqtt_varint_len(uint32_t v)
{
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

/* UTF-8 Encoded String rules (section 1.5.4): well-formed UTF-8, no
 * surrogates, no U+0000. (Other control characters are allowed.) */
bool mqtt_utf8_valid(const uint8_t *s, size_t len);

/* ---- additions: limits and encoder helpers ---------------------------- */

#define MQTT_MAX_REMAINING 268435455u /* largest Remaining Length */
#define MQTT_MAX_PACKET 268435460u    /* 1 + 4 + MQTT_MAX_REMAINING */
/* Fixed header (5) + topic (2 + 65535) + packet id (2) + property length (4)
 * + properties (65536). */
#define MQTT_PUBLISH_HEADER_MAX (5u + 2u + 65535u + 2u + 4u + 65536u)

/* Notes on mqtt_decode():
 * - On ERROR with MQTT_RC_UNSUPPORTED_VERSION, out->type is MQTT_CONNECT and
 *   out->u.connect.version holds the protocol level byte the client sent, so
 *   the broker can answer in the right CONNACK format (3.x code 1, 5.0 0x84).
 * - For 3.x (opts->version != MQTT_V5, or a 3.x CONNECT) every error other
 *   than PACKET_TOO_LARGE and UNSUPPORTED_VERSION is reported as MALFORMED:
 *   3.x has no reason codes, the connection is simply closed.
 * - A decoded SUBSCRIBE/UNSUBSCRIBE list is well-formed UTF-8, but each
 *   filter still has to be checked with topic_filter_valid() by the caller
 *   (a 5.0 broker answers an invalid one with SUBACK 0x8F, not a disconnect).
 * - A decoded props.user_props slice spans from the first to the last user
 *   property and may contain other properties interleaved on the wire;
 *   mqtt_user_props_next() and the encoder skip those. */

/* Encode a subscription options byte. */
uint8_t mqtt_sub_opts_byte(const struct mqtt_sub_opts *o);

/* Append one topic filter (and its options byte when with_opts, for
 * SUBSCRIBE) to a list for struct mqtt_subscribe.list. Returns the new used
 * length, or 0 if it does not fit or len > 65535. */
size_t mqtt_sub_list_append(uint8_t *out, size_t cap, size_t used, const char *filter,
                            size_t len, const struct mqtt_sub_opts *o, bool with_opts);

/* Append one user property (0x26, key, value) to a buffer for
 * struct mqtt_props.user_props. Returns the new used length or 0. */
size_t mqtt_user_prop_append(uint8_t *out, size_t cap, size_t used, const char *key,
                             size_t klen, const char *val, size_t vlen);

#endif
