/* sys.c - the $SYS topic tree with Mosquitto's topic names and meanings.
 *
 * Worker 0 publishes it every sys_interval seconds as retained messages,
 * so a client subscribing to $SYS/# gets the latest values at once. The
 * load averages are exponentially decaying rates over 1, 5 and 15 minutes,
 * updated at each publication, as Mosquitto computes them.
 */
#include "broker/sys.h"

#include <malloc.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "broker/broker.h"
#include "broker/message.h"
#include "broker/retain.h"
#include "broker/router.h"
#include "net/worker.h"
#include "util/clock.h"

struct load {
    const char *name;   /* under $SYS/broker/load/ */
    size_t stat;        /* offsetof(struct worker_stats, ...) */
    uint64_t last;
    double avg[3];
};

static struct load loads[] = {
    {"messages/received", offsetof(struct worker_stats, msgs_received), 0, {0, 0, 0}},
    {"messages/sent", offsetof(struct worker_stats, msgs_sent), 0, {0, 0, 0}},
    {"publish/dropped", offsetof(struct worker_stats, msgs_dropped), 0, {0, 0, 0}},
    {"bytes/received", offsetof(struct worker_stats, bytes_received), 0, {0, 0, 0}},
    {"bytes/sent", offsetof(struct worker_stats, bytes_sent), 0, {0, 0, 0}},
    {"connections", offsetof(struct worker_stats, connections_accepted), 0, {0, 0, 0}},
};
static uint64_t last_load_ms;
static size_t heap_maximum; /* sampled at each publication */

uint64_t broker_stat_sum(const struct broker *b, size_t field_offset)
{
    uint64_t sum = 0;
    for (int i = 0; i < b->worker_count; i++) {
        const _Atomic uint64_t *f =
            (const _Atomic uint64_t *)((const char *)&b->workers[i]->stats + field_offset);
        sum += atomic_load_explicit(f, memory_order_relaxed);
    }
    return sum;
}

static void put(struct worker *w, const char *topic, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void put(struct worker *w, const char *topic, const char *fmt, ...)
{
    char value[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    struct message *m = message_new((const uint8_t *)topic, strlen(topic), (const uint8_t *)value,
                                    (size_t)n < sizeof(value) ? (size_t)n : sizeof(value) - 1,
                                    NULL, 0, 0, true, 0, 0, 0);
    if (!m)
        return;
    retain_set(w->broker->retain, m);
    worker_route(w, m);
    message_unref(m);
}

static void update_loads(struct worker *w)
{
    struct broker *b = w->broker;
    uint64_t now = w->now;
    double interval = last_load_ms ? (double)(now - last_load_ms) / 1000.0 : 0;
    static const double periods[3] = {60.0, 300.0, 900.0};
    static const char *names[3] = {"1min", "5min", "15min"};
    for (size_t i = 0; i < sizeof(loads) / sizeof(loads[0]); i++) {
        struct load *l = &loads[i];
        uint64_t v = broker_stat_sum(b, l->stat);
        if (interval > 0) {
            double rate = (double)(v - l->last) / interval * 60.0; /* per minute */
            for (int k = 0; k < 3; k++) {
                double e = exp(-interval / periods[k]);
                l->avg[k] = rate + e * (l->avg[k] - rate);
            }
        }
        l->last = v;
        for (int k = 0; k < 3; k++) {
            char topic[96];
            snprintf(topic, sizeof(topic), "$SYS/broker/load/%s/%s", l->name, names[k]);
            put(w, topic, "%.2f", l->avg[k]);
        }
    }
    last_load_ms = now;
}

void sys_publish(struct worker *w)
{
    struct broker *b = w->broker;
    uint64_t connected = BROKER_STAT(b, clients_connected);
    uint64_t sessions = BROKER_STAT(b, sessions);
    uint64_t disconnected = sessions > connected ? sessions - connected : 0;
    put(w, "$SYS/broker/version", "petrel version %s", PETREL_VERSION);
    put(w, "$SYS/broker/uptime", "%llu seconds",
        (unsigned long long)((w->now - b->start_mono_ms) / 1000));
    put(w, "$SYS/broker/clients/connected", "%llu", (unsigned long long)connected);
    put(w, "$SYS/broker/clients/active", "%llu", (unsigned long long)connected);
    put(w, "$SYS/broker/clients/disconnected", "%llu", (unsigned long long)disconnected);
    put(w, "$SYS/broker/clients/inactive", "%llu", (unsigned long long)disconnected);
    put(w, "$SYS/broker/clients/total", "%llu", (unsigned long long)sessions);
    put(w, "$SYS/broker/clients/maximum", "%llu",
        (unsigned long long)atomic_load(&b->clients_maximum));
    put(w, "$SYS/broker/messages/received", "%llu",
        (unsigned long long)BROKER_STAT(b, packets_received));
    put(w, "$SYS/broker/messages/sent", "%llu", (unsigned long long)BROKER_STAT(b, packets_sent));
    put(w, "$SYS/broker/publish/messages/received", "%llu",
        (unsigned long long)BROKER_STAT(b, msgs_received));
    put(w, "$SYS/broker/publish/messages/sent", "%llu",
        (unsigned long long)BROKER_STAT(b, msgs_sent));
    put(w, "$SYS/broker/publish/messages/dropped", "%llu",
        (unsigned long long)BROKER_STAT(b, msgs_dropped));
    put(w, "$SYS/broker/bytes/received", "%llu", (unsigned long long)BROKER_STAT(b, bytes_received));
    put(w, "$SYS/broker/bytes/sent", "%llu", (unsigned long long)BROKER_STAT(b, bytes_sent));
    put(w, "$SYS/broker/subscriptions/count", "%zu", router_count(b->router));
    put(w, "$SYS/broker/retained messages/count", "%zu", retain_count(b->retain) + atomic_load(&b->retained_stored));
    struct mallinfo2 mi = mallinfo2();
    size_t heap = mi.uordblks + mi.hblkhd;
    if (heap > heap_maximum)
        heap_maximum = heap;
    put(w, "$SYS/broker/heap/current", "%zu", heap);
    put(w, "$SYS/broker/heap/maximum", "%zu", heap_maximum);
    /* Not a Mosquitto topic: malformed or invalid packets from clients. */
    put(w, "$SYS/broker/errors/protocol", "%llu",
        (unsigned long long)BROKER_STAT(b, protocol_errors));
    update_loads(w);
}
