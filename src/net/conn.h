/* conn.h - one client's network connection as the broker sees it.
 *
 * A connection is owned by exactly one worker at a time (it may move once,
 * after CONNECT, to the worker that owns its session). Its buffers are empty
 * (and own no memory) while no data is in flight, so idle connections stay
 * small. Bytes reach the socket only through the worker's flush at the end
 * of each loop iteration: one write per connection per iteration.
 */
#ifndef PETREL_NET_CONN_H
#define PETREL_NET_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "util/buf.h"

struct worker;
struct session;
struct listener;

enum ev_kind { EV_LISTENER = 1, EV_CONN, EV_WAKE };

enum conn_state {
    CONN_NEW,      /* waiting for CONNECT */
    CONN_ACTIVE,   /* CONNACK sent, session attached */
    CONN_CLOSING,  /* flush what is queued, then close */
};

struct alias_out {
    char *topic;
    uint16_t len;
};

struct conn {
    int ev_kind;                 /* EV_CONN; first member, see worker.c */
    int fd;
    struct worker *worker;
    const struct listener *listener;
    struct session *session;     /* reference, once ACTIVE */
    struct conn *prev, *next;    /* worker's connection list */
    struct conn *dirty_next;     /* worker's flush list */
    struct conn *paced_next;     /* worker's list of paced publishers */
    struct session *pace_on;     /* the backed-up session it waits for (ref) */
    struct acl_rules *acl;       /* its ACL rules (auth.h), NULL = no ACL */
    enum conn_state state;
    bool dirty;                  /* on the flush list */
    bool want_write;             /* EPOLLOUT armed */
    bool read_paused;            /* EPOLLIN off: too much output waiting */
    bool will_on_close;          /* closing abnormally: publish the will */
    bool request_problem_info;
    bool paced;                  /* reading stopped: see worker.c, pacing */
    bool buffers_used;           /* since the last tick (else they are trimmed) */
    uint8_t version;
    uint16_t keepalive;          /* seconds, as granted */
    uint64_t last_rx;            /* monotonic ms of the last packet in */
    uint64_t deadline;           /* CONNECT timeout, monotonic ms */
    struct buf in;               /* a partial packet carried between reads */
    struct buf out;              /* bytes waiting for the socket */
    /* MQTT 5 limits the client set in CONNECT. */
    uint16_t peer_receive_max;
    uint32_t peer_max_packet;    /* 0 = none */
    uint16_t peer_alias_max;
    /* Topic aliases: inbound [1..alias_in_max], outbound [1..alias_out_count]. */
    uint16_t alias_in_max;
    char **alias_in;
    uint16_t *alias_in_len;
    struct alias_out *alias_out;
    uint16_t alias_out_count;
    const char *mount;           /* listener's mount_point, or NULL */
    uint16_t mount_len;
    char peer[64];               /* "address:port" for logs */
    char *client_id;             /* for logs, set at CONNECT */
};

#endif
