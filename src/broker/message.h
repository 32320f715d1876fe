/* message.h - an application message as it travels through the broker.
 *
 * Immutable once created and reference-counted: fan-out to many subscribers
 * shares one message. Topic, payload and the forwardable MQTT 5 properties
 * (payload format, content type, response topic, correlation data, user
 * properties, already encoded) live in the same allocation.
 */
#ifndef PETREL_BROKER_MESSAGE_H
#define PETREL_BROKER_MESSAGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct message {
    atomic_uint refs;
    uint8_t qos;
    bool retain;
    uint16_t topic_len;
    uint32_t payload_len;
    uint32_t props_len;   /* encoded forwardable properties, no length prefix */
    uint64_t expiry_at;   /* wall-clock ms when it expires; 0 = never */
    uint64_t origin;      /* id of the publishing session (No Local); 0 = none */
    uint32_t origin_hash; /* hash of the publisher's client id (sticky shared) */
    /* Durable store (persist.c): its id once a stored delivery refers to
     * it, how many do, and whether its own M record was written (the
     * first delivery carries the message inline; an M record is written
     * for the second). The record goes with the last delivery. */
    _Atomic uint64_t store_id;
    atomic_uint store_refs;
    atomic_bool store_written;
    const char *topic;    /* NUL-terminated, points into data[] */
    const uint8_t *payload;
    const uint8_t *props;
    uint8_t data[];
};

/* Returns a message with one reference, or NULL when out of memory. */
struct message *message_new(const uint8_t *topic, size_t topic_len,
                            const uint8_t *payload, size_t payload_len,
                            const uint8_t *props, size_t props_len,
                            uint8_t qos, bool retain, uint64_t expiry_at,
                            uint64_t origin, uint32_t origin_hash);

static inline struct message *message_ref(struct message *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void message_unref(struct message *m);

/* Has the message expired at wall-clock time now_ms? */
static inline bool message_expired(const struct message *m, uint64_t now_ms)
{
    return m->expiry_at && now_ms >= m->expiry_at;
}

#endif
