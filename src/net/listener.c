/* listener.c - open the configured listening sockets. */
#include "net/listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "conf/config.h"
#include "net/conn.h"
#include "util/log.h"

#define LISTEN_BACKLOG 1024

static int open_unix(const struct listener_conf *lc, struct listener *l, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(lc->unix_path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "unix socket path too long: %s", lc->unix_path);
        return -1;
    }
    strcpy(sa.sun_path, lc->unix_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    unlink(lc->unix_path); /* a stale socket from an earlier run */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
        goto fail;
    l->fd = fd;
    snprintf(l->name, sizeof(l->name), "%s", lc->unix_path);
    return 0;
fail:
    snprintf(err, errlen, "cannot listen on %s: %s", lc->unix_path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

static int open_tcp(const struct addrinfo *ai, struct listener *l, int port, char *err, size_t errlen)
{
    char host[64] = "?";
    getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), NULL, 0, NI_NUMERICHOST);
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        goto fail;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
        goto fail;
    l->fd = fd;
    snprintf(l->name, sizeof(l->name), ai->ai_family == AF_INET6 ? "[%s]:%d" : "%s:%d",
             host, port);
    return 0;
fail:
    snprintf(err, errlen, "cannot listen on %s port %d: %s", host, port, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

int listeners_open(const struct config *c, struct listener **out, char *err, size_t errlen)
{
    struct listener *ls = NULL;
    int count = 0, cap = 0;
    for (size_t i = 0; i < c->listener_count; i++) {
        const struct listener_conf *lc = &c->listeners[i];
        struct addrinfo *res = NULL;
        if (lc->protocol == LISTENER_WEBSOCKETS) {
            log_warning("listener on port %d: websockets are not supported yet, listener skipped",
                        lc->port);
            continue;
        }
        /* Serving plain MQTT where the file asks for TLS would be worse
         * than not listening at all. */
        if (lc->tls_configured) {
            log_warning("listener on port %d: TLS is not supported yet, listener skipped", lc->port);
            continue;
        }
        if (!lc->unix_path) {
            struct addrinfo hints;
            memset(&hints, 0, sizeof(hints));
            hints.ai_family = lc->socket_domain ? lc->socket_domain : AF_UNSPEC;
            hints.ai_socktype = SOCK_STREAM;
            hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
            char port[16];
            snprintf(port, sizeof(port), "%d", lc->port);
            int rc = getaddrinfo(lc->address, port, &hints, &res);
            if (rc != 0) {
                snprintf(err, errlen, "listener %s:%d: %s", lc->address ? lc->address : "*",
                         lc->port, gai_strerror(rc));
                goto fail;
            }
        }
        for (struct addrinfo *ai = res;; ai = ai->ai_next) {
            if (!lc->unix_path && !ai)
                break;
            if (count == cap) {
                cap = cap ? cap * 2 : 4;
                struct listener *n = realloc(ls, sizeof(*ls) * (size_t)cap);
                if (!n) {
                    freeaddrinfo(res);
                    snprintf(err, errlen, "out of memory");
                    goto fail;
                }
                ls = n;
            }
            struct listener *l = &ls[count];
            memset(l, 0, sizeof(*l));
            l->ev_kind = EV_LISTENER;
            l->conf = lc;
            atomic_init(&l->connections, 0);
            int rc = lc->unix_path ? open_unix(lc, l, err, errlen)
                                   : open_tcp(ai, l, lc->port, err, errlen);
            if (rc < 0) {
                if (res)
                    freeaddrinfo(res);
                goto fail;
            }
            log_notice("listening on %s", l->name);
            count++;
            if (lc->unix_path)
                break;
        }
        if (res)
            freeaddrinfo(res);
    }
    *out = ls;
    return count;
fail:
    listeners_close(ls, count);
    return -1;
}

void listeners_close(struct listener *ls, int count)
{
    for (int i = 0; i < count; i++) {
        close(ls[i].fd);
        if (ls[i].conf->unix_path)
            unlink(ls[i].conf->unix_path);
    }
    free(ls);
}
