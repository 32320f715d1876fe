/* message.c - reference-counted application messages.
 *
 * One allocation per message: the struct, then the topic and its NUL, the
 * payload, and the encoded properties. Creation is O(size), ref/unref O(1).
 */
#include "broker/message.h"

#include <stdlib.h>
#include <string.h>

struct message *message_new(const uint8_t *topic, size_t topic_len,
                            const uint8_t *payload, size_t payload_len,
                            const uint8_t *props, size_t props_len,
                            uint8_t qos, bool retain, uint64_t expiry_at,
                            uint64_t origin, uint32_t origin_hash)
{
    /* The length fields are narrower than size_t; refuse what they cannot
     * hold rather than truncate. */
    if (topic_len > UINT16_MAX || payload_len > UINT32_MAX || props_len > UINT32_MAX)
        return NULL;
    size_t data_len = topic_len + 1 + payload_len + props_len;
    if (data_len > SIZE_MAX - sizeof(struct message))
        return NULL;
    struct message *m = malloc(sizeof(*m) + data_len);
    if (!m)
        return NULL;
    atomic_init(&m->refs, 1);
    m->qos = qos;
    m->retain = retain;
    m->topic_len = (uint16_t)topic_len;
    m->payload_len = (uint32_t)payload_len;
    m->props_len = (uint32_t)props_len;
    m->expiry_at = expiry_at;
    m->origin = origin;
    m->origin_hash = origin_hash;
    atomic_init(&m->store_id, 0);
    atomic_init(&m->store_refs, 0);
    atomic_init(&m->store_written, false);

    uint8_t *p = m->data;
    if (topic_len)
        memcpy(p, topic, topic_len);
    p[topic_len] = '\0';
    m->topic = (const char *)p;
    p += topic_len + 1;
    if (payload_len)
        memcpy(p, payload, payload_len);
    m->payload = p;
    p += payload_len;
    if (props_len)
        memcpy(p, props, props_len);
    m->props = p;
    return m;
}

void message_unref(struct message *m)
{
    if (!m)
        return;
    /* acq_rel: the release orders our last use before the free; the acquire
     * makes every other thread's last use visible to the freeing thread. */
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        free(m);
}
