/* record.h - the on-disk format of the durable store: keys and values of
 * every record, encoded and decoded without I/O (docs/storage.md).
 *
 * A key starts with one byte naming its kind. Client ids are written with
 * a 2-byte length in front so that a session's records sort together and
 * one id is never a prefix of another's range. Integers are big-endian so
 * that byte order is numeric order. Values start with the version of their
 * layout. Decoders check every length against the input: a damaged store
 * gives an error, never a read out of bounds.
 */
#ifndef PETREL_STORE_RECORD_H
#define PETREL_STORE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 2: a delivery may carry its message (REC_DELIVERY_INLINE); queued
 * deliveries kept on disk only (REC_COLD). 3: retained messages in a
 * column family of their own ("retained"), moved there when a store of an
 * earlier version is opened. A store of an earlier version is read and
 * then marked with this one. */
#define STORE_FORMAT_VERSION 3

enum record_kind {
    REC_META = 'V',      /* "V": format version */
    REC_SESSION = 'S',   /* S cid: session */
    REC_SUB = 'U',       /* U cid filter: subscription */
    REC_MESSAGE = 'M',   /* M id: a message that deliveries refer to */
    REC_DELIVERY = 'Q',  /* Q cid seq: queued or in-flight delivery */
    REC_COLD = 'C',      /* C cid seq: queued delivery kept on disk only */
    REC_QOS2_IN = 'X',   /* X cid packet-id: inbound QoS 2 awaiting PUBREL */
    REC_RETAINED = 'R',  /* R topic: retained message */
    REC_DELAYED = 'D',   /* D due seq: delayed publish */
};

/* Largest key: kind, client id (length + 65535 bytes), filter. */
#define RECORD_KEY_MAX (1 + 2 + 65535 + 65535 + 8)

/* A message as stored (views into the decoded value). */
struct rec_message {
    uint8_t qos;
    bool retain;
    uint64_t expiry_at;        /* wall-clock ms; 0 = never */
    uint32_t origin_hash;
    const uint8_t *topic;
    uint16_t topic_len;
    const uint8_t *props;
    uint32_t props_len;
    const uint8_t *payload;
    uint32_t payload_len;
};

struct rec_session {
    uint32_t expiry;           /* seconds; UINT32_MAX = never */
    uint8_t version;           /* protocol level of the last connection */
    bool connected;            /* a connection was attached when written */
    uint64_t expire_at;        /* wall-clock ms; 0 = connected or never */
    bool has_will;
    uint32_t will_delay;
    uint32_t will_expiry;      /* Message Expiry Interval of the will */
    uint64_t will_at;          /* wall-clock ms a delayed will is due; 0 = none */
    struct rec_message will;
};

struct rec_sub {
    uint8_t options;           /* SUBSCRIBE options byte */
    uint32_t sub_id;           /* 0 = none */
};

#define REC_MAX_SUB_IDS 4

/* Delivery flags as stored: retain 0x01, sent 0x02, PUBREC received 0x04,
 * and this one: the message follows in the record (format 2). */
#define REC_DELIVERY_INLINE 0x08

struct rec_delivery {
    uint64_t msg_id;
    uint8_t qos;
    uint8_t flags;             /* enum delivery_flags */
    uint16_t packet_id;
    uint8_t sub_id_count;
    uint32_t sub_ids[REC_MAX_SUB_IDS];
    struct rec_message message; /* with REC_DELIVERY_INLINE */
};

/* ---- keys: each returns the key length written to out (RECORD_KEY_MAX). */
size_t rec_key_meta(uint8_t *out);
size_t rec_key_session(uint8_t *out, const char *cid, size_t cid_len);
size_t rec_key_sub(uint8_t *out, const char *cid, size_t cid_len,
                   const char *filter, size_t filter_len);
size_t rec_key_message(uint8_t *out, uint64_t id);
/* kind: REC_DELIVERY or REC_COLD (same layout). */
size_t rec_key_delivery(uint8_t *out, uint8_t kind, const char *cid, size_t cid_len,
                        uint64_t seq);
size_t rec_key_qos2(uint8_t *out, const char *cid, size_t cid_len, uint16_t pid);
size_t rec_key_retained(uint8_t *out, const char *topic, size_t topic_len);
size_t rec_key_delayed(uint8_t *out, uint64_t due, uint64_t seq);
/* The range [lo, hi) of every key of one kind for one client id. */
void rec_key_client_range(uint8_t *lo, size_t *lo_len, uint8_t *hi, size_t *hi_len,
                          uint8_t kind, const char *cid, size_t cid_len);

/* A decoded key. Views point into the key. Returns false when malformed. */
struct rec_key {
    uint8_t kind;
    const char *cid;
    uint16_t cid_len;
    const char *name;          /* filter (U) or topic (R) */
    size_t name_len;
    uint64_t num;              /* message id, delivery seq, packet id, due */
    uint64_t num2;             /* delayed: seq */
};
bool rec_key_decode(const uint8_t *k, size_t len, struct rec_key *out);

/* ---- values: encoders return the length, writing at most cap bytes (call
 * with cap 0 to get the size); decoders return false when malformed. */
size_t rec_message_encode(const struct rec_message *m, uint8_t *out, size_t cap);
bool rec_message_decode(const uint8_t *v, size_t len, struct rec_message *out);
size_t rec_session_encode(const struct rec_session *s, uint8_t *out, size_t cap);
bool rec_session_decode(const uint8_t *v, size_t len, struct rec_session *out);
size_t rec_sub_encode(const struct rec_sub *s, uint8_t *out, size_t cap);
bool rec_sub_decode(const uint8_t *v, size_t len, struct rec_sub *out);
size_t rec_delivery_encode(const struct rec_delivery *d, uint8_t *out, size_t cap);
bool rec_delivery_decode(const uint8_t *v, size_t len, struct rec_delivery *out);
size_t rec_meta_encode(uint8_t *out, size_t cap);
/* The format version in a meta value, or -1. */
int rec_meta_decode(const uint8_t *v, size_t len);

#endif
