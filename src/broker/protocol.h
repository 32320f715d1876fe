/* protocol.h - the inbound half of the protocol: what the broker does with
 * each packet a client sends (CONNECT through AUTH), on the worker that owns
 * the connection. Knows nothing of sockets: it reads decoded packets and
 * writes encoded ones into the connection's output buffer. */
#ifndef PETREL_BROKER_PROTOCOL_H
#define PETREL_BROKER_PROTOCOL_H

#include <stdint.h>

struct worker;
struct conn;
struct mqtt_packet;

enum protocol_result {
    PROTOCOL_CONTINUE = 0, /* handled; go on with the next packet */
    PROTOCOL_STOP,         /* the connection is closing: read no further */
    PROTOCOL_MOVE,         /* CONNECT belongs on another worker: hand it over
                              with this packet still unconsumed */
};

/* Handle one decoded packet. For PROTOCOL_MOVE, *target is the worker id. */
enum protocol_result protocol_handle(struct worker *w, struct conn *c,
                                     const struct mqtt_packet *p, int *target);

/* The decoder rejected the input: answer as the version requires (5.0:
 * DISCONNECT or CONNACK with the reason), count it, log it, close. */
void protocol_reject(struct worker *w, struct conn *c, uint8_t reason);

/* The connection is gone (closed by either side): detach its session. */
void protocol_conn_closed(struct worker *w, struct conn *c);

/* Server shutdown: tell an MQTT 5 client why (DISCONNECT 0x8B). */
void protocol_shutdown(struct worker *w, struct conn *c);

/* Keepalive expired. */
void protocol_keepalive_timeout(struct worker *w, struct conn *c);

#endif
