/* listener.h - listening sockets: TCP over IPv4/IPv6 and unix sockets.
 * Each listening socket is watched by every worker (EPOLLEXCLUSIVE), so
 * the kernel hands each new connection to one of them. */
#ifndef PETREL_NET_LISTENER_H
#define PETREL_NET_LISTENER_H

#include <stdatomic.h>
#include <stddef.h>

struct listener_conf;
struct config;

struct listener {
    int ev_kind;                /* EV_LISTENER; first member */
    int fd;
    const struct listener_conf *conf;
    atomic_int connections;     /* open connections, for max_connections */
    char name[96];              /* "127.0.0.1:1883" or the socket path */
};

/* Open every configured listener (a listener whose address resolves to
 * several addresses gets one socket each). Returns the count or -1 with
 * err set. */
int listeners_open(const struct config *c, struct listener **out, char *err, size_t errlen);
void listeners_close(struct listener *l, int count);

#endif
