/* main.c - petrel-bench: MQTT load generator and benchmark.
 *
 * Parses the options, builds the connections of a scenario (conn, pub, sub,
 * fanin, fanout, p2p, shared), hands them to the worker threads (client.c),
 * drives the run phases (subscribers ready -> publishers ready -> warm-up ->
 * measured window -> drain), samples the broker process (--pid) and prints a
 * human summary plus one machine-readable "RESULT {json}" line.
 */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const char *const scenario_names[] = {
    [SC_CONN] = "conn", [SC_PUB] = "pub", [SC_SUB] = "sub", [SC_FANIN] = "fanin",
    [SC_FANOUT] = "fanout", [SC_P2P] = "p2p", [SC_SHARED] = "shared",
};

static void usage(FILE *f)
{
    fprintf(f,
"usage: petrel-bench SCENARIO [options]\n"
"scenarios:\n"
"  conn    open -c N connections at --conn-rate, hold them for -d seconds\n"
"  pub     -P publishers on TOPIC/<id>, no subscribers\n"
"  sub     -S subscribers on --filter (default TOPIC/#), until -d elapses\n"
"  fanin   -P publishers on TOPIC/<id> -> -S subscribers on TOPIC/#\n"
"  fanout  -P publishers (default 1) on TOPIC -> -S subscribers on TOPIC\n"
"  p2p     -n pairs: publisher i -> subscriber i on TOPIC/<i>\n"
"  shared  -P publishers on TOPIC/<id> -> -S members of $share/bench/TOPIC/#\n"
"options:\n"
"  --host H            broker address (default 127.0.0.1)\n"
"  -p, --port N        broker port (default 1883)\n"
"  -V 3|4|5            MQTT version: 3 = 3.1, 4 = 3.1.1 (default), 5 = 5.0\n"
"  -q 0|1|2            QoS of publications and subscriptions (default 0)\n"
"  -s BYTES            payload size, >= 16 (default 64)\n"
"  --rate R            messages/s per publisher; 0 = as fast as possible (default)\n"
"  --inflight N        unacknowledged QoS 1/2 messages per publisher (default 64)\n"
"  -L, --count N       messages per publisher, then stop (default: until -d)\n"
"  -d SECONDS          measured duration (default 10)\n"
"  -w SECONDS          warm-up before the measured window (default 0)\n"
"  -P N, -S N, -n N    publishers, subscribers, pairs\n"
"  -c N                connections for the conn scenario (default 1000)\n"
"  --topic PREFIX      topic prefix (default bench)\n"
"  --filter FILTER     subscription of the sub scenario\n"
"  --id-prefix P       client ids P-p0, P-s0, ... (default pb<pid>), e.g. to\n"
"                      come back to persistent sessions of an earlier run\n"
"  --clean / --no-clean  clean session / clean start flag (default clean)\n"
"  --session-expiry S  MQTT 5 session expiry interval\n"
"  --keepalive S       keep-alive (default 60)\n"
"  --conn-rate R       connection attempts per second (default 5000)\n"
"  --ifaddr-range N    bind connections to 127.0.0.1 .. 127.0.0.N\n"
"                      (default: automatic above 10000 connections)\n"
"  --pid PID           sample broker CPU time and RSS from /proc/PID\n"
"  -t N                worker threads (default 1)\n"
"  --drain S           longest wait for in-flight deliveries at the end (default 10)\n"
"  --sub-stall S       subscribers stop reading for S seconds after publishing\n"
"                      starts (to provoke broker queue limits)\n"
"  --json              print only the RESULT line\n");
}

/* ---- broker process sampling ----------------------------------------- */

struct procsample {
    bool ok;
    double cpu_s;
    long rss_kb;
};

static struct procsample sample_proc(int pid)
{
    struct procsample s = {false, 0, 0};
    if (pid <= 0)
        return s;
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return s;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return s;
    /* after ") ": state(3) ... utime(14) stime(15) */
    unsigned long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return s;
    s.cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (!f)
        return s;
    while (fgets(buf, sizeof buf, f))
        if (!strncmp(buf, "VmRSS:", 6))
            s.rss_kb = strtol(buf + 6, NULL, 10);
    fclose(f);
    s.ok = true;
    return s;
}

/* ---- totals over the workers ----------------------------------------- */

struct totals {
    uint64_t conn_ok, conn_fail, closed, ready;
    uint64_t sent, sent_win, acked, inflight;
    uint64_t recv, recv_win, uniq, stray, pub_errors, proto_errors;
    uint64_t last_recv_ns, pubs_done;
};

static struct worker *g_workers;
static uint32_t g_nworkers;

static struct totals totals(void)
{
    struct totals t;
    memset(&t, 0, sizeof t);
    for (uint32_t i = 0; i < g_nworkers; i++) {
        struct wstats *s = &g_workers[i].st;
        t.conn_ok += ld(&s->conn_ok);
        t.conn_fail += ld(&s->conn_fail);
        t.closed += ld(&s->closed);
        t.ready += ld(&s->ready);
        t.sent += ld(&s->sent);
        t.sent_win += ld(&s->sent_win);
        t.acked += ld(&s->acked);
        t.inflight += ld(&s->inflight);
        t.recv += ld(&s->recv);
        t.recv_win += ld(&s->recv_win);
        t.uniq += ld(&s->uniq);
        t.stray += ld(&s->stray);
        t.pub_errors += ld(&s->pub_errors);
        t.proto_errors += ld(&s->proto_errors);
        t.pubs_done += ld(&s->pubs_done);
        uint64_t l = ld(&s->last_recv_ns);
        if (l > t.last_recv_ns)
            t.last_recv_ns = l;
    }
    return t;
}

static const char *first_error(void)
{
    for (uint32_t i = 0; i < g_nworkers; i++)
        if (g_workers[i].errmsg[0])
            return g_workers[i].errmsg;
    return "";
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- options ------------------------------------------------------------ */

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi || isnan(v))
        return false;
    *out = v;
    return true;
}

enum {
    OPT_HOST = 256, OPT_RATE, OPT_INFLIGHT, OPT_TOPIC, OPT_FILTER, OPT_CLEAN, OPT_NOCLEAN,
    OPT_EXPIRY, OPT_KEEPALIVE, OPT_CONNRATE, OPT_IFADDR, OPT_PID, OPT_DRAIN, OPT_STALL,
    OPT_JSON, OPT_IDPREFIX, OPT_HELP,
};

static int parse_args(int argc, char **argv, struct bench_cfg *cfg, uint32_t *npairs)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, 'p'},
        {"rate", required_argument, NULL, OPT_RATE},
        {"inflight", required_argument, NULL, OPT_INFLIGHT},
        {"count", required_argument, NULL, 'L'},
        {"topic", required_argument, NULL, OPT_TOPIC},
        {"id-prefix", required_argument, NULL, OPT_IDPREFIX},
        {"filter", required_argument, NULL, OPT_FILTER},
        {"clean", no_argument, NULL, OPT_CLEAN},
        {"no-clean", no_argument, NULL, OPT_NOCLEAN},
        {"session-expiry", required_argument, NULL, OPT_EXPIRY},
        {"keepalive", required_argument, NULL, OPT_KEEPALIVE},
        {"conn-rate", required_argument, NULL, OPT_CONNRATE},
        {"ifaddr-range", required_argument, NULL, OPT_IFADDR},
        {"pid", required_argument, NULL, OPT_PID},
        {"threads", required_argument, NULL, 't'},
        {"drain", required_argument, NULL, OPT_DRAIN},
        {"sub-stall", required_argument, NULL, OPT_STALL},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            usage(stdout);
            exit(0);
        }
        usage(stderr);
        return -1;
    }
    int sc = -1;
    for (int i = 0; i < (int)(sizeof scenario_names / sizeof *scenario_names); i++)
        if (!strcmp(argv[1], scenario_names[i]))
            sc = i;
    if (sc < 0) {
        fprintf(stderr, "petrel-bench: unknown scenario '%s'\n", argv[1]);
        usage(stderr);
        return -1;
    }
    cfg->sc = (enum scenario)sc;
    int port = 1883;
    double v;
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "p:V:q:s:d:w:P:S:n:c:t:L:h", longopts, NULL)) != -1) {
        const char *a = optarg;
        bool ok = true;
        switch (opt) {
        case OPT_HOST: cfg->host = a; break;
        case 'p': ok = parse_num(a, 1, 65535, &v); port = (int)v; break;
        case 'V':
            ok = parse_num(a, 3, 5, &v);
            cfg->version = (uint8_t)v;
            break;
        case 'q': ok = parse_num(a, 0, 2, &v); cfg->qos = (uint8_t)v; break;
        case 's': ok = parse_num(a, PAYLOAD_MIN, 256 * 1024 * 1024, &v); cfg->size = (uint32_t)v; break;
        case OPT_RATE: ok = parse_num(a, 0, 1e9, &cfg->rate); break;
        case OPT_INFLIGHT: ok = parse_num(a, 1, 65535, &v); cfg->inflight = (uint32_t)v; break;
        case 'L': ok = parse_num(a, 1, 4e9, &v); cfg->count = (uint64_t)v; break;
        case 'd': ok = parse_num(a, 0, 1e7, &cfg->duration); break;
        case 'w': ok = parse_num(a, 0, 1e7, &cfg->warmup); break;
        case 'P': ok = parse_num(a, 1, 1e7, &v); cfg->pubs = (uint32_t)v; break;
        case 'S': ok = parse_num(a, 1, 1e7, &v); cfg->subs = (uint32_t)v; break;
        case 'n': ok = parse_num(a, 1, 1e7, &v); *npairs = (uint32_t)v; break;
        case 'c': ok = parse_num(a, 1, 1e7, &v); cfg->conns = (uint32_t)v; break;
        case 't': ok = parse_num(a, 1, 256, &v); cfg->threads = (uint32_t)v; break;
        case OPT_TOPIC: cfg->prefix = a; break;
        case OPT_IDPREFIX: cfg->id_prefix = a; break;
        case OPT_FILTER: cfg->filter = a; break;
        case OPT_CLEAN: cfg->clean = true; break;
        case OPT_NOCLEAN: cfg->clean = false; break;
        case OPT_EXPIRY: ok = parse_num(a, 0, 4294967295.0, &v); cfg->session_expiry = (int64_t)v; break;
        case OPT_KEEPALIVE: ok = parse_num(a, 0, 65535, &v); cfg->keepalive = (uint16_t)v; break;
        case OPT_CONNRATE: ok = parse_num(a, 0, 1e9, &cfg->conn_rate); break;
        case OPT_IFADDR: ok = parse_num(a, 1, 65000, &v); cfg->ifaddrs = (uint32_t)v; break;
        case OPT_PID: ok = parse_num(a, 1, 1e9, &v); cfg->pid = (int)v; break;
        case OPT_DRAIN: ok = parse_num(a, 0, 3600, &cfg->drain); break;
        case OPT_STALL: ok = parse_num(a, 0, 3600, &cfg->sub_stall); break;
        case OPT_JSON: cfg->json = true; break;
        case 'h':
        case OPT_HELP: usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
        if (!ok) {
            fprintf(stderr, "petrel-bench: bad value '%s' for option -%c\n", a,
                    opt < 256 ? opt : '-');
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "petrel-bench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(cfg->host, NULL, &hints, &res) != 0) {
        fprintf(stderr, "petrel-bench: cannot resolve %s\n", cfg->host);
        return -1;
    }
    memcpy(&cfg->addr, res->ai_addr, sizeof cfg->addr);
    freeaddrinfo(res);
    cfg->addr.sin_port = htons((uint16_t)port);
    return 0;
}

/* ---- scenario setup ------------------------------------------------------ */

struct setup {
    struct conn *conns;
    uint32_t nconn;
    struct trkset *trksets;  /* one per subscriber, or one for the shared group */
    uint32_t ntrksets;
    char **strings;          /* topics and filters to free */
    uint32_t nstrings;
    uint64_t fan;            /* expected deliveries per message sent */
};

static char *keep(struct setup *s, char *str)
{
    s->strings[s->nstrings++] = str;
    return str;
}

static char *fmt(const char *f, const char *a, uint32_t n)
{
    char *out = NULL;
    if (asprintf(&out, f, a, n) < 0)
        return NULL;
    return out;
}

static int trkset_init(struct trkset *t, uint32_t lo, uint32_t n, bool locked, uint32_t window)
{
    t->t = calloc(n ? n : 1, sizeof *t->t);
    if (!t->t)
        return -1;
    for (uint32_t i = 0; i < n; i++)
        seqtrk_init(&t->t[i], window);
    t->lo = lo;
    t->n = n;
    t->locked = locked;
    atomic_flag_clear(&t->lock);
    return 0;
}

static int build(struct bench_cfg *cfg, uint32_t npairs, struct setup *s)
{
    uint32_t P = 0, S = 0, idle = 0;
    switch (cfg->sc) {
    case SC_CONN: idle = cfg->conns ? cfg->conns : 1000; break;
    case SC_PUB: P = cfg->pubs ? cfg->pubs : 1; break;
    case SC_SUB: S = cfg->subs ? cfg->subs : 1; break;
    case SC_FANIN: P = cfg->pubs ? cfg->pubs : 10; S = cfg->subs ? cfg->subs : 1; break;
    case SC_FANOUT: P = cfg->pubs ? cfg->pubs : 1; S = cfg->subs ? cfg->subs : 10; break;
    case SC_P2P: P = S = npairs ? npairs : 10; break;
    case SC_SHARED: P = cfg->pubs ? cfg->pubs : 10; S = cfg->subs ? cfg->subs : 2; break;
    }
    cfg->pubs = P;
    cfg->subs = S;
    cfg->conns = idle;
    s->nconn = P + S + idle;
    s->conns = calloc(s->nconn, sizeof *s->conns);
    s->strings = calloc(2 * (size_t)s->nconn + 2, sizeof *s->strings);
    if (!s->conns || !s->strings)
        return -1;
    if (!cfg->ifaddrs)
        cfg->ifaddrs = s->nconn > 10000 ? 1 + s->nconn / 10000 : 1;

    /* Streams that are tracked, to size the sequence windows (64 MiB total,
     * 1 Ki..1 Mi numbers per stream). */
    uint64_t streams = 1;
    switch (cfg->sc) {
    case SC_FANIN: case SC_FANOUT: streams = (uint64_t)P * S; break;
    case SC_P2P: case SC_SHARED: streams = P; break;
    case SC_SUB: streams = (uint64_t)S * (cfg->pubs ? cfg->pubs : 1000); break;
    default: break;
    }
    uint64_t win = (64ull << 23) / streams;
    cfg->window_bits = (uint32_t)(win < 1024 ? 1024 : win > (1u << 20) ? (1u << 20) : win);

    s->fan = cfg->sc == SC_FANIN || cfg->sc == SC_FANOUT ? S : 1;
    s->ntrksets = cfg->sc == SC_SHARED ? 1 : S;
    s->trksets = calloc(s->ntrksets ? s->ntrksets : 1, sizeof *s->trksets);
    if (!s->trksets)
        return -1;
    if (cfg->sc == SC_SHARED &&
        trkset_init(&s->trksets[0], 0, P, cfg->threads > 1, cfg->window_bits) < 0)
        return -1;

    const char *pre = cfg->prefix;
    char *all = cfg->sc == SC_FANIN || cfg->sc == SC_SHARED ? keep(s, fmt("%s/#", pre, 0)) : NULL;
    char *share = NULL;
    if (cfg->sc == SC_SHARED) {
        if (asprintf(&share, "$share/bench/%s/#", pre) < 0)
            return -1;
        keep(s, share);
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < S; i++, k++) {
        struct conn *c = &s->conns[k];
        c->role = ROLE_SUB;
        c->idx = i;
        switch (cfg->sc) {
        case SC_FANIN: c->sub_filter = all; break;
        case SC_FANOUT: c->sub_filter = pre; break;
        case SC_P2P: c->sub_filter = keep(s, fmt("%s/%u", pre, i)); break;
        case SC_SHARED: c->sub_filter = share; break;
        case SC_SUB:
            c->sub_filter = cfg->filter ? cfg->filter : keep(s, fmt("%s/#", pre, 0));
            break;
        default: break;
        }
        if (!c->sub_filter)
            return -1;
        if (cfg->sc == SC_SHARED) {
            c->trk = &s->trksets[0];
        } else {
            uint32_t lo = cfg->sc == SC_P2P ? i : 0;
            uint32_t n = cfg->sc == SC_P2P ? 1 : cfg->sc == SC_SUB ? (cfg->pubs ? cfg->pubs : 1000) : P;
            if (trkset_init(&s->trksets[i], lo, n, false, cfg->window_bits) < 0)
                return -1;
            c->trk = &s->trksets[i];
        }
    }
    if (cfg->sc == SC_SUB)
        cfg->pubs = 0;
    for (uint32_t i = 0; i < P; i++, k++) {
        struct conn *c = &s->conns[k];
        c->role = ROLE_PUB;
        c->idx = i;
        c->topic = cfg->sc == SC_FANOUT ? pre : keep(s, fmt("%s/%u", pre, i));
        if (!c->topic || strlen(c->topic) > 65535)
            return -1;
        c->topic_len = (uint16_t)strlen(c->topic);
        c->max_inflight = cfg->inflight;
        if (cfg->qos && !(c->pid_used = calloc(1024, sizeof(uint64_t))))
            return -1;
        /* spread the publishers' first messages over one interval */
        c->next_due = cfg->rate > 0 ? (uint64_t)(1e9 / cfg->rate * i / P) : 0;
    }
    for (uint32_t i = 0; i < idle; i++, k++) {
        s->conns[k].role = ROLE_IDLE;
        s->conns[k].idx = i;
    }
    for (uint32_t i = 0; i < s->nconn; i++)
        s->conns[i].fd = -1;
    return 0;
}

/* ---- report -------------------------------------------------------------- */

struct report {
    double window_s, sent_rate, recv_rate, conn_rate, connect_s;
    uint64_t expected, lost, dup, reord, late, uniq;
    bool has_expected;
    struct procsample p0, p1;
    struct hist lat, conn_lat;
};

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static void print_report(const struct bench_cfg *cfg, const struct totals *t,
                         const struct report *r, const char *err)
{
    static const char *const qos_ack[] = {"none", "PUBACK", "PUBREC/PUBREL/PUBCOMP"};
    double cpu = r->p0.ok && r->p1.ok ? r->p1.cpu_s - r->p0.cpu_s : -1;
    uint64_t per_cpu_base = cfg->subs ? t->recv_win : t->sent_win;
    double per_cpu = cpu > 0 ? (double)per_cpu_base / cpu : 0;
    double rss_per_conn = cfg->sc == SC_CONN && r->p0.ok && r->p1.ok && t->conn_ok
                              ? (double)(r->p1.rss_kb - r->p0.rss_kb) * 1024.0 / (double)t->conn_ok
                              : 0;
    if (!cfg->json) {
        printf("scenario %s: %u publishers, %u subscribers, %u idle connections, MQTT %s, "
               "QoS %u (%s), payload %u B, rate %s, %u thread(s)\n",
               scenario_names[cfg->sc], cfg->pubs, cfg->subs, cfg->conns,
               cfg->version == 5 ? "5.0" : cfg->version == 4 ? "3.1.1" : "3.1", cfg->qos,
               qos_ack[cfg->qos], cfg->size, cfg->rate > 0 ? "limited" : "max", cfg->threads);
        if (cfg->rate > 0)
            printf("  rate per publisher: %.0f msg/s\n", cfg->rate);
        printf("  connections: %llu ok, %llu failed, %llu closed by broker; connect %.3f s "
               "(%.0f conn/s), connect latency p50 %.0f us p99 %.0f us max %.0f us\n",
               (unsigned long long)t->conn_ok, (unsigned long long)t->conn_fail,
               (unsigned long long)t->closed, r->connect_s, r->conn_rate,
               us(hist_percentile(&r->conn_lat, 50)), us(hist_percentile(&r->conn_lat, 99)),
               us(r->conn_lat.max));
        if (cfg->sc != SC_CONN) {
            printf("  sent %llu (acked %llu), received %llu, expected %s%llu, lost %llu, "
                   "dup %llu, reordered %llu (late %llu), stray %llu\n",
                   (unsigned long long)t->sent, (unsigned long long)t->acked,
                   (unsigned long long)t->recv, r->has_expected ? "" : "~",
                   (unsigned long long)r->expected, (unsigned long long)r->lost,
                   (unsigned long long)r->dup, (unsigned long long)r->reord,
                   (unsigned long long)r->late, (unsigned long long)t->stray);
            printf("  window %.2f s: %.0f msg/s sent, %.0f msg/s received\n", r->window_s,
                   r->sent_rate, r->recv_rate);
            printf("  latency (us): p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f  "
                   "(%llu samples)\n",
                   us(hist_percentile(&r->lat, 50)), us(hist_percentile(&r->lat, 90)),
                   us(hist_percentile(&r->lat, 99)), us(hist_percentile(&r->lat, 99.9)),
                   us(r->lat.max), (unsigned long long)r->lat.count);
            if (t->pub_errors || t->proto_errors)
                printf("  publish errors %llu, protocol errors %llu\n",
                       (unsigned long long)t->pub_errors, (unsigned long long)t->proto_errors);
        }
        if (cpu >= 0) {
            printf("  broker pid %d: CPU %.2f s in window", cfg->pid, cpu);
            if (cfg->sc != SC_CONN)
                printf(", %.0f msgs per CPU-second", per_cpu);
            printf("; RSS %ld KiB -> %ld KiB", r->p0.rss_kb, r->p1.rss_kb);
            if (cfg->sc == SC_CONN)
                printf(" (%.0f B per connection)", rss_per_conn);
            printf("\n");
        }
        if (err && *err)
            printf("  first error: %s\n", err);
    }
    printf("RESULT {\"scenario\":\"%s\",\"version\":%u,\"qos\":%u,\"size\":%u,"
           "\"publishers\":%u,\"subscribers\":%u,\"connections\":%u,\"threads\":%u,"
           "\"rate\":%.0f,\"duration\":%.3f,"
           "\"conn_ok\":%llu,\"conn_fail\":%llu,\"closed\":%llu,\"connect_s\":%.3f,"
           "\"conn_rate\":%.1f,\"conn_p50_us\":%.1f,\"conn_p99_us\":%.1f,"
           "\"sent\":%llu,\"acked\":%llu,\"received\":%llu,\"unique\":%llu,\"expected\":%llu,"
           "\"lost\":%llu,\"dup\":%llu,\"reordered\":%llu,\"late\":%llu,\"stray\":%llu,"
           "\"pub_errors\":%llu,\"proto_errors\":%llu,"
           "\"window_s\":%.3f,\"sent_win\":%llu,\"recv_win\":%llu,"
           "\"sent_rate\":%.1f,\"recv_rate\":%.1f,"
           "\"lat_samples\":%llu,\"lat_p50_us\":%.1f,\"lat_p90_us\":%.1f,\"lat_p99_us\":%.1f,"
           "\"lat_p999_us\":%.1f,\"lat_max_us\":%.1f,"
           "\"broker_cpu_s\":%.3f,\"msgs_per_cpu_s\":%.1f,\"rss_start_kb\":%ld,"
           "\"rss_end_kb\":%ld,\"rss_per_conn_b\":%.1f,\"error\":\"",
           scenario_names[cfg->sc], cfg->version, cfg->qos, cfg->size, cfg->pubs, cfg->subs,
           cfg->conns, cfg->threads, cfg->rate, cfg->duration,
           (unsigned long long)t->conn_ok, (unsigned long long)t->conn_fail,
           (unsigned long long)t->closed, r->connect_s, r->conn_rate,
           us(hist_percentile(&r->conn_lat, 50)), us(hist_percentile(&r->conn_lat, 99)),
           (unsigned long long)t->sent, (unsigned long long)t->acked,
           (unsigned long long)t->recv, (unsigned long long)r->uniq,
           (unsigned long long)r->expected, (unsigned long long)r->lost,
           (unsigned long long)r->dup, (unsigned long long)r->reord,
           (unsigned long long)r->late, (unsigned long long)t->stray,
           (unsigned long long)t->pub_errors, (unsigned long long)t->proto_errors,
           r->window_s, (unsigned long long)t->sent_win, (unsigned long long)t->recv_win,
           r->sent_rate, r->recv_rate, (unsigned long long)r->lat.count,
           us(hist_percentile(&r->lat, 50)), us(hist_percentile(&r->lat, 90)),
           us(hist_percentile(&r->lat, 99)), us(hist_percentile(&r->lat, 99.9)),
           us(r->lat.max), cpu, per_cpu, r->p0.rss_kb, r->p1.rss_kb, rss_per_conn);
    for (const char *p = err; p && *p; p++)
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if ((unsigned char)*p >= 0x20)
            putchar(*p);
    printf("\"}\n");
    fflush(stdout);
}

/* ---- run ----------------------------------------------------------------- */

static void progress(const struct bench_cfg *cfg, uint64_t t0, struct totals *prev)
{
    struct totals t = totals();
    if (!cfg->json)
        fprintf(stderr,
                "[%5.1fs] sent %llu (+%llu/s) recv %llu (+%llu/s) inflight %llu conns %llu "
                "fail %llu stray %llu\n",
                (double)(now_ns() - t0) / 1e9, (unsigned long long)t.sent,
                (unsigned long long)(t.sent - prev->sent), (unsigned long long)t.recv,
                (unsigned long long)(t.recv - prev->recv), (unsigned long long)t.inflight,
                (unsigned long long)t.ready, (unsigned long long)t.conn_fail,
                (unsigned long long)t.stray);
    *prev = t;
}

/* Wait until `ready + failed` reaches n (or a stall); returns false on timeout. */
static bool wait_connected(const struct bench_cfg *cfg, uint64_t n, uint64_t t0)
{
    struct totals prev;
    memset(&prev, 0, sizeof prev);
    uint64_t last_progress = now_ns(), last_line = last_progress;
    uint64_t last_done = 0;
    for (;;) {
        struct totals t = totals();
        uint64_t done = t.ready + t.conn_fail;
        if (done >= n)
            return true;
        uint64_t now = now_ns();
        if (done != last_done) {
            last_done = done;
            last_progress = now;
        }
        if (now - last_progress > 40ull * 1000000000ull)
            return false;
        if (now - last_line >= 1000000000ull) {
            last_line = now;
            progress(cfg, t0, &prev);
        }
        sleep_ms(5);
    }
}

static void raise_nofile(uint64_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need + 64) {
        rl.rlim_cur = need + 64 < rl.rlim_max ? need + 64 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    struct bench_cfg cfg = {
        .host = "127.0.0.1", .version = 4, .qos = 0, .size = 64, .rate = 0, .inflight = 64,
        .duration = 10, .warmup = 0, .prefix = "bench", .clean = true, .session_expiry = -1,
        .threads = 1, .conn_rate = 5000, .keepalive = 60, .drain = 10,
    };
    uint32_t npairs = 0;
    if (parse_args(argc, argv, &cfg, &npairs) < 0)
        return 2;
    struct setup s;
    memset(&s, 0, sizeof s);
    if (build(&cfg, npairs, &s) < 0) {
        fprintf(stderr, "petrel-bench: out of memory or bad topic\n");
        return 2;
    }
    raise_nofile(s.nconn);
    if (cfg.threads > s.nconn)
        cfg.threads = s.nconn ? s.nconn : 1;

    /* Distribute connections over the workers round-robin. */
    g_nworkers = cfg.threads;
    g_workers = calloc(g_nworkers, sizeof *g_workers);
    if (!g_workers)
        return 2;
    for (uint32_t i = 0; i < g_nworkers; i++) {
        struct worker *w = &g_workers[i];
        w->subs = calloc(s.nconn / g_nworkers + 1, sizeof *w->subs);
        w->pubs = calloc(s.nconn / g_nworkers + 1, sizeof *w->pubs);
        if (!w->subs || !w->pubs)
            return 2;
    }
    for (uint32_t i = 0; i < s.nconn; i++) {
        struct worker *w = &g_workers[i % g_nworkers];
        struct conn *c = &s.conns[i];
        c->w = w;
        if (c->role == ROLE_PUB)
            w->pubs[w->npub++] = c;
        else
            w->subs[w->nsub++] = c;
    }
    for (uint32_t i = 0; i < g_nworkers; i++)
        if (worker_init(&g_workers[i], &cfg, i) < 0) {
            fprintf(stderr, "petrel-bench: worker setup failed\n");
            return 2;
        }

    atomic_store(&g_win_start, UINT64_MAX);
    atomic_store(&g_win_end, UINT64_MAX);
    atomic_store(&g_run_start, UINT64_MAX);
    atomic_store(&g_phase, PH_SUBS);

    struct report r;
    memset(&r, 0, sizeof r);
    hist_init(&r.lat);
    hist_init(&r.conn_lat);
    uint64_t t0 = now_ns();
    if (cfg.sc == SC_CONN)
        r.p0 = sample_proc(cfg.pid);

    for (uint32_t i = 0; i < g_nworkers; i++)
        if (pthread_create(&g_workers[i].th, NULL, worker_main, &g_workers[i]) != 0) {
            fprintf(stderr, "petrel-bench: pthread_create failed\n");
            return 2;
        }

    bool setup_ok = true;
    const char *why = NULL;
    uint64_t nfirst = (uint64_t)cfg.subs + cfg.conns;
    if (!wait_connected(&cfg, nfirst, t0)) {
        setup_ok = false;
        why = "connecting stalled";
    }
    atomic_store(&g_phase, PH_PUBS);
    if (setup_ok && !wait_connected(&cfg, s.nconn, t0)) {
        setup_ok = false;
        why = "connecting stalled";
    }
    struct totals t = totals();
    uint64_t t_conn = now_ns();
    r.connect_s = (double)(t_conn - t0) / 1e9;
    r.conn_rate = r.connect_s > 0 ? (double)t.conn_ok / r.connect_s : 0;
    if (t.conn_fail)
        setup_ok = false;
    if (!setup_ok && !why)
        why = "connections failed";

    struct totals prev = t;
    uint64_t last_line = now_ns();
    if (cfg.sc == SC_CONN) {
        /* Hold the connections for the duration, then sample the broker. */
        uint64_t end = now_ns() + (uint64_t)(cfg.duration * 1e9);
        while (now_ns() < end) {
            sleep_ms(20);
            if (now_ns() - last_line >= 1000000000ull) {
                last_line = now_ns();
                progress(&cfg, t0, &prev);
            }
        }
        r.p1 = sample_proc(cfg.pid);
        r.window_s = cfg.duration;
    } else if (setup_ok) {
        uint64_t start = now_ns();
        uint64_t ws = start + (uint64_t)(cfg.warmup * 1e9);
        uint64_t we = cfg.count ? UINT64_MAX : ws + (uint64_t)(cfg.duration * 1e9);
        atomic_store(&g_win_start, ws);
        atomic_store(&g_win_end, we);
        atomic_store(&g_run_start, start);
        atomic_store(&g_phase, PH_RUN);
        bool sampled = false;
        uint64_t pub_end = 0;
        for (;;) {
            uint64_t now = now_ns();
            if (!sampled && now >= ws) {
                r.p0 = sample_proc(cfg.pid);
                sampled = true;
            }
            t = totals();
            if (cfg.count ? t.pubs_done >= cfg.pubs && cfg.pubs : now >= we) {
                pub_end = now;
                break;
            }
            if (cfg.count && now >= ws + (uint64_t)(cfg.duration * 1e9) && cfg.duration > 0 &&
                cfg.sc != SC_SUB) {
                pub_end = now; /* the count takes longer than the duration */
                break;
            }
            if (cfg.pubs && t.pubs_done >= cfg.pubs) { /* all publishers gone */
                pub_end = now;
                break;
            }
            if (now - last_line >= 1000000000ull) {
                last_line = now;
                progress(&cfg, t0, &prev);
            }
            sleep_ms(2);
        }
        if (!sampled) {
            r.p0 = sample_proc(cfg.pid);
            ws = pub_end;
        }
        if (!cfg.count)
            r.p1 = sample_proc(cfg.pid);
        atomic_store(&g_phase, PH_STOP);
        /* Drain: until everything expected arrived and every QoS 1/2 flow
         * completed, or nothing moved for 1 s, or --drain elapsed. */
        uint64_t dstart = now_ns(), moved = dstart;
        uint64_t last_sig = UINT64_MAX;
        for (;;) {
            sleep_ms(2);
            uint64_t now = now_ns();
            t = totals();
            uint64_t expect = t.sent * s.fan;
            bool complete = t.inflight == 0 && (cfg.subs == 0 || cfg.sc == SC_SUB ||
                                                t.uniq >= expect);
            if (complete && cfg.sc != SC_SUB)
                break;
            uint64_t sig = t.recv + t.acked + t.stray;
            if (sig != last_sig) {
                last_sig = sig;
                moved = now;
            }
            if (now - moved > 1000000000ull || now - dstart > (uint64_t)(cfg.drain * 1e9))
                break;
            if (now - last_line >= 1000000000ull) {
                last_line = now;
                progress(&cfg, t0, &prev);
            }
        }
        if (cfg.count) {
            t = totals();
            uint64_t end = t.last_recv_ns > pub_end ? t.last_recv_ns : pub_end;
            atomic_store(&g_win_end, end);
            we = end;
            r.p1 = sample_proc(cfg.pid);
        }
        r.window_s = (double)(we - ws) / 1e9;
        if (cfg.count) {
            double pub_s = (double)(pub_end - ws) / 1e9;
            t = totals();
            r.sent_rate = pub_s > 0 ? (double)t.sent_win / pub_s : 0;
        }
    }

    atomic_store(&g_phase, PH_QUIT);
    for (uint32_t i = 0; i < g_nworkers; i++)
        pthread_join(g_workers[i].th, NULL);
    t = totals();
    for (uint32_t i = 0; i < g_nworkers; i++) {
        hist_merge(&r.lat, &g_workers[i].lat);
        hist_merge(&r.conn_lat, &g_workers[i].conn_lat);
    }
    for (uint32_t i = 0; i < s.ntrksets; i++)
        for (uint32_t j = 0; j < s.trksets[i].n; j++) {
            struct seqtrk *q = &s.trksets[i].t[j];
            r.uniq += q->uniq;
            r.dup += q->dup;
            r.reord += q->reord;
            r.late += q->late;
            if (cfg.sc == SC_SUB)
                r.expected += q->top; /* gap based: no knowledge of what was sent */
        }
    r.has_expected = cfg.sc != SC_SUB;
    if (cfg.sc != SC_SUB)
        r.expected = cfg.subs ? t.sent * s.fan : 0;
    r.lost = r.expected > r.uniq ? r.expected - r.uniq : 0;
    if (cfg.sc != SC_CONN && r.window_s > 0) {
        if (!cfg.count)
            r.sent_rate = (double)t.sent_win / r.window_s;
        r.recv_rate = (double)t.recv_win / r.window_s;
    }
    char err[256];
    snprintf(err, sizeof err, "%s%s%s", why ? why : "", why && *first_error() ? ": " : "",
             first_error());
    print_report(&cfg, &t, &r, err);

    for (uint32_t i = 0; i < g_nworkers; i++) {
        worker_free(&g_workers[i]);
        free(g_workers[i].subs);
        free(g_workers[i].pubs);
    }
    for (uint32_t i = 0; i < s.nconn; i++) {
        free(s.conns[i].out);
        free(s.conns[i].in);
        free(s.conns[i].pid_used);
    }
    for (uint32_t i = 0; i < s.ntrksets; i++) {
        for (uint32_t j = 0; j < s.trksets[i].n; j++)
            seqtrk_free(&s.trksets[i].t[j]);
        free(s.trksets[i].t);
    }
    for (uint32_t i = 0; i < s.nstrings; i++)
        free(s.strings[i]);
    free(s.strings);
    free(s.trksets);
    free(s.conns);
    free(g_workers);
    return setup_ok ? 0 : 1;
}
