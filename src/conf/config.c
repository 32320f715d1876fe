/* config.c - reads mosquitto.conf-style configuration files into struct config.
 *
 * One "key value..." per line; '#' starts a comment line; blank lines and
 * surrounding whitespace are ignored. `listener` opens a listener block that
 * receives the per-listener keys that follow it. Keys before the first
 * `listener` that belong to a listener configure the "default listener"
 * (Mosquitto's `port` / `bind_address` listener). `include_dir` parses the
 * *.conf files of a directory inline. Every key Mosquitto documents is either
 * implemented or accepted with a warning; anything else is an error naming
 * file, line and key.
 */
#include "conf/config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "util/log.h"

#define CONFIG_MAX_FILE_SIZE (16 * 1024 * 1024)
#define CONFIG_DEFAULT_PORT 1883
#define CONFIG_MAX_CMDLINE_PORTS 10
#define MQTT_MAX_PAYLOAD 268435455LL

/* State shared by a file and the files it includes. */
struct parser {
    struct config *c;
    char *err;
    size_t errlen;
    const char *file;       /* interned in c->files */
    int line;
    int depth;              /* 0 = main file, 1 = file from include_dir */
    long cur;               /* index of the current listener block, -1 = none yet */
    bool main_known;        /* main_dev/main_ino identify the main file */
    dev_t main_dev;
    ino_t main_ino;
    bool seen_bridge;       /* a `connection` line was seen */
    bool log_type_set;      /* first log_type replaces the default */
    bool log_dest_set;      /* first log_dest replaces the default */
    int security_line;      /* line of the first security key, 0 = none */
};

typedef int (*key_handler)(struct parser *p, const char *key, char *val);

enum key_kind {
    KEY_IMPL,          /* handled by fn */
    KEY_NUMBER,        /* a global number in [min, max] stored at off */
    KEY_UNSUPPORTED,   /* Mosquitto key, not implemented: warn */
    KEY_TLS,           /* listener TLS key, not implemented: warn, flag listener */
    KEY_BRIDGE,        /* bridge key: valid after `connection`, skipped */
};

struct key_def {
    const char *name;
    enum key_kind kind;
    key_handler fn;
    /* KEY_NUMBER: where in struct config, how wide (2, 4 or 8 bytes), and
     * the accepted range (never negative, so an int field reads it as is). */
    size_t off;
    size_t width;
    long long min, max;
};

/* ---- messages ---------------------------------------------------------- */

static int fail(struct parser *p, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->err && p->errlen) {
        if (key)
            snprintf(p->err, p->errlen, "%s:%d: %s: %s", p->file, p->line, key, msg);
        else
            snprintf(p->err, p->errlen, "%s:%d: %s", p->file, p->line, msg);
    }
    return -1;
}

static void warn(struct parser *p, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void warn(struct parser *p, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->c->warning_count++;
    log_warning("%s:%d: %s: %s", p->file, p->line, key, msg);
}

static int set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- small helpers ------------------------------------------------------ */

static void security_init(struct security_conf *s)
{
    memset(s, 0, sizeof *s);
    s->allow_anonymous = -1;
    s->allow_zero_length_clientid = true;
}

static void security_free(struct security_conf *s)
{
    free(s->password_file);
    free(s->acl_file);
    free(s->auto_id_prefix);
    s->password_file = s->acl_file = s->auto_id_prefix = NULL;
}

static void listener_init(struct listener_conf *l)
{
    memset(l, 0, sizeof *l);
    l->max_connections = -1;
    l->protocol = LISTENER_MQTT;
    security_init(&l->security);
}

static void listener_free(struct listener_conf *l)
{
    free(l->address);
    free(l->unix_path);
    free(l->mount_point);
    security_free(&l->security);
    l->address = l->unix_path = l->mount_point = NULL;
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

static char *skip_space(char *s)
{
    while (is_space(*s))
        s++;
    return s;
}

/* Splits off the first whitespace-separated token of *s; *s then points past
 * it (to the rest, leading whitespace skipped). Returns NULL at end. */
static char *next_token(char **s)
{
    char *start = skip_space(*s), *end;

    if (!*start)
        return NULL;
    end = start;
    while (*end && !is_space(*end))
        end++;
    if (*end)
        *end++ = '\0';
    *s = skip_space(end);
    return start;
}

static int need_value(struct parser *p, const char *key, const char *val)
{
    if (!*val)
        return fail(p, key, "missing value");
    return 0;
}

/* The value must be a single token; extra text is ignored with a warning
 * (Mosquitto reads only the first word of such values). */
static int single_token(struct parser *p, const char *key, char *val, char **tok)
{
    char *rest = val;

    if (need_value(p, key, val))
        return -1;
    *tok = next_token(&rest);
    if (*rest)
        warn(p, key, "extra text '%s' after the value ignored", rest);
    return 0;
}

static int parse_number(struct parser *p, const char *key, const char *tok,
                        long long min, long long max, long long *out)
{
    char *end;
    long long v = 0;

    errno = 0;
    v = strtoll(tok, &end, 10);
    if (end == tok || *end || !(isdigit((unsigned char)tok[0]) || tok[0] == '-' || tok[0] == '+'))
        return fail(p, key, "'%s' is not a number", tok);
    if (errno == ERANGE || v < min || v > max)
        return fail(p, key, "%s is out of range (%lld to %lld)", tok, min, max);
    *out = v;
    return 0;
}

static int get_number(struct parser *p, const char *key, char *val,
                      long long min, long long max, long long *out)
{
    char *tok;

    if (single_token(p, key, val, &tok))
        return -1;
    return parse_number(p, key, tok, min, max, out);
}

static int get_bool(struct parser *p, const char *key, char *val, bool *out)
{
    char *tok;

    if (single_token(p, key, val, &tok))
        return -1;
    if (!strcmp(tok, "true"))
        *out = true;
    else if (!strcmp(tok, "false"))
        *out = false;
    else
        return fail(p, key, "expected true or false, got '%s'", tok);
    return 0;
}

/* A string value: the rest of the line, which may contain spaces. Setting a
 * key twice is an error, as in Mosquitto. */
static int get_string(struct parser *p, const char *key, char *val, char **out,
                      bool replace)
{
    char *copy;

    if (need_value(p, key, val))
        return -1;
    if (*out && !replace)
        return fail(p, key, "duplicate value (already set to '%s')", *out);
    copy = strdup(val);
    if (!copy)
        return fail(p, key, "out of memory");
    free(*out);
    *out = copy;
    return 0;
}

/* The listener that listener-scoped keys apply to now. Before the first
 * `listener` line that is the default listener, which this marks as used. */
static struct listener_conf *cur_listener(struct parser *p)
{
    if (p->cur < 0) {
        if (!p->c->default_listener_used) {
            p->c->default_listener_used = true;
            p->c->default_listener.file = p->file;
            p->c->default_listener.line = p->line;
        }
        return &p->c->default_listener;
    }
    return &p->c->listeners[p->cur];
}

/* Where the per_listener_settings keys go. */
static struct security_conf *cur_security(struct parser *p)
{
    if (!p->security_line)
        p->security_line = p->line;
    if (p->c->per_listener_settings)
        return &cur_listener(p)->security;
    return &p->c->security;
}

static int intern_file(struct config *c, const char *name, const char **out)
{
    char **files;
    char *copy = strdup(name);

    if (!copy)
        return -1;
    files = realloc(c->files, (c->file_count + 1) * sizeof *files);
    if (!files) {
        free(copy);
        return -1;
    }
    c->files = files;
    c->files[c->file_count++] = copy;
    *out = copy;
    return 0;
}

/* ---- key handlers --------------------------------------------------------- */

static int parse_buffer(struct parser *p, char *text, size_t len);
static int parse_file(struct parser *p, const char *path);

static int k_listener(struct parser *p, const char *key, char *val)
{
    struct config *c = p->c;
    struct listener_conf *arr, *l;
    char *rest = val, *tok;
    long long port = 0;
    int rc = -1;

    if (need_value(p, key, val))
        return -1;
    tok = next_token(&rest);
    if (parse_number(p, key, tok, 0, 65535, &port))
        return -1;
    if (port == 0 && !*rest)
        return fail(p, key, "port 0 needs a unix socket path as the second argument");
    arr = realloc(c->listeners, (c->listener_count + 1) * sizeof *arr);
    if (!arr)
        return fail(p, key, "out of memory");
    c->listeners = arr;
    l = &arr[c->listener_count];
    listener_init(l);
    l->port = (int)port;
    l->file = p->file;
    l->line = p->line;
    if (*rest) {
        char **dst = port == 0 ? &l->unix_path : &l->address;
        *dst = strdup(rest);
        if (!*dst) {
            fail(p, key, "out of memory");
            goto out;
        }
    }
    p->cur = (long)c->listener_count;
    c->listener_count++;
    rc = 0;
out:
    if (rc)
        listener_free(l);
    return rc;
}

static int k_port(struct parser *p, const char *key, char *val)
{
    long long v = 0;

    if (get_number(p, key, val, 1, 65535, &v))
        return -1;
    if (!p->c->default_listener_used) {
        p->c->default_listener.file = p->file;
        p->c->default_listener.line = p->line;
    }
    p->c->default_listener_used = true;
    p->c->default_listener.port = (int)v;
    return 0;
}

static int k_bind_address(struct parser *p, const char *key, char *val)
{
    char *tok;

    if (single_token(p, key, val, &tok))
        return -1;
    if (!p->c->default_listener_used) {
        p->c->default_listener.file = p->file;
        p->c->default_listener.line = p->line;
    }
    p->c->default_listener_used = true;
    return get_string(p, key, tok, &p->c->default_listener.address, false);
}

static int k_socket_domain(struct parser *p, const char *key, char *val)
{
    char *tok;

    if (single_token(p, key, val, &tok))
        return -1;
    if (!strcmp(tok, "ipv4"))
        cur_listener(p)->socket_domain = AF_INET;
    else if (!strcmp(tok, "ipv6"))
        cur_listener(p)->socket_domain = AF_INET6;
    else
        return fail(p, key, "expected ipv4 or ipv6, got '%s'", tok);
    return 0;
}

static int k_protocol(struct parser *p, const char *key, char *val)
{
    char *tok;

    if (single_token(p, key, val, &tok))
        return -1;
    if (!strcmp(tok, "mqtt"))
        cur_listener(p)->protocol = LISTENER_MQTT;
    else if (!strcmp(tok, "websockets"))
        cur_listener(p)->protocol = LISTENER_WEBSOCKETS;
    else
        return fail(p, key, "expected mqtt or websockets, got '%s'", tok);
    return 0;
}

static int k_mount_point(struct parser *p, const char *key, char *val)
{
    if (need_value(p, key, val))
        return -1;
    if (strpbrk(val, "+#"))
        return fail(p, key, "'%s' must not contain the wildcards + or #", val);
    return get_string(p, key, val, &cur_listener(p)->mount_point, false);
}

static int k_max_connections(struct parser *p, const char *key, char *val)
{
    long long v = 0;

    if (get_number(p, key, val, -1, INT_MAX, &v))
        return -1;
    if (p->cur < 0)
        p->c->max_connections = (int)v;
    else
        p->c->listeners[p->cur].max_connections = (int)v;
    return 0;
}

static int k_max_qos(struct parser *p, const char *key, char *val)
{
    long long v = 0;

    if (get_number(p, key, val, 0, 2, &v))
        return -1;
    if (p->cur < 0)
        p->c->max_qos = (uint8_t)v;
    else {
        p->c->listeners[p->cur].max_qos = (int)v;
        p->c->listeners[p->cur].max_qos_set = true;
    }
    return 0;
}

static int k_max_topic_alias(struct parser *p, const char *key, char *val)
{
    long long v = 0;

    if (get_number(p, key, val, 0, 65535, &v))
        return -1;
    if (p->cur < 0)
        p->c->max_topic_alias = (uint16_t)v;
    else {
        p->c->listeners[p->cur].max_topic_alias = (int)v;
        p->c->listeners[p->cur].max_topic_alias_set = true;
    }
    return 0;
}

static int k_per_listener_settings(struct parser *p, const char *key, char *val)
{
    bool v = false;

    if (get_bool(p, key, val, &v))
        return -1;
    if (p->security_line && v != p->c->per_listener_settings)
        return fail(p, key, "must come before every security option "
                    "(one was set at line %d)", p->security_line);
    p->c->per_listener_settings = v;
    return 0;
}

static int k_allow_anonymous(struct parser *p, const char *key, char *val)
{
    bool v = false;

    if (get_bool(p, key, val, &v))
        return -1;
    cur_security(p)->allow_anonymous = v ? 1 : 0;
    return 0;
}

static int k_password_file(struct parser *p, const char *key, char *val)
{
    if (need_value(p, key, val))
        return -1;
    return get_string(p, key, val, &cur_security(p)->password_file, false);
}

static int k_acl_file(struct parser *p, const char *key, char *val)
{
    if (need_value(p, key, val))
        return -1;
    return get_string(p, key, val, &cur_security(p)->acl_file, false);
}

static int k_allow_zero_length_clientid(struct parser *p, const char *key, char *val)
{
    bool v = false;

    if (get_bool(p, key, val, &v))
        return -1;
    cur_security(p)->allow_zero_length_clientid = v;
    return 0;
}

static int k_auto_id_prefix(struct parser *p, const char *key, char *val)
{
    char *tok;

    if (single_token(p, key, val, &tok))
        return -1;
    return get_string(p, key, tok, &cur_security(p)->auto_id_prefix, true);
}

static int k_max_packet_size(struct parser *p, const char *key, char *val)
{
    long long v = 0;

    if (get_number(p, key, val, 0, UINT32_MAX, &v))
        return -1;
    if (v > 0 && v < 20)
        return fail(p, key, "%lld is too small (0 for no limit, or at least 20)", v);
    p->c->max_packet_size = (uint32_t)v;
    return 0;
}

static int k_queue_qos0_messages(struct parser *p, const char *key, char *val)
{
    return get_bool(p, key, val, &p->c->queue_qos0_messages);
}

static int k_retain_available(struct parser *p, const char *key, char *val)
{
    return get_bool(p, key, val, &p->c->retain_available);
}

static int k_upgrade_outgoing_qos(struct parser *p, const char *key, char *val)
{
    return get_bool(p, key, val, &p->c->upgrade_outgoing_qos);
}

static int k_persistent_client_expiration(struct parser *p, const char *key, char *val)
{
    char *tok, *end, unit;
    long long n, mult;

    if (single_token(p, key, val, &tok))
        return -1;
    errno = 0;
    n = isdigit((unsigned char)tok[0]) ? strtoll(tok, &end, 10) : -1;
    if (n < 0 || errno == ERANGE || end == tok || !end[0] || end[1])
        return fail(p, key, "'%s' is not a duration (a number followed by h, d, w, m or y)", tok);
    unit = end[0];
    switch (unit) {
    case 'h': mult = 3600; break;
    case 'd': mult = 86400; break;
    case 'w': mult = 7 * 86400LL; break;
    case 'm': mult = 30 * 86400LL; break;
    case 'y': mult = 365 * 86400LL; break;
    default:
        return fail(p, key, "'%s': unknown unit '%c' (use h, d, w, m or y)", tok, unit);
    }
    if (n > INT64_MAX / mult)
        return fail(p, key, "'%s' is too large", tok);
    p->c->persistent_client_expiration = n == 0 ? -1 : n * mult;
    return 0;
}

static int k_persistence(struct parser *p, const char *key, char *val)
{
    return get_bool(p, key, val, &p->c->persistence);
}

static int k_persistence_location(struct parser *p, const char *key, char *val)
{
    return get_string(p, key, val, &p->c->persistence_location, false);
}

static int k_persistence_file(struct parser *p, const char *key, char *val)
{
    if (strchr(val, '/'))
        return fail(p, key, "a name inside persistence_location, not a path");
    return get_string(p, key, val, &p->c->persistence_file, false);
}

static int k_durability(struct parser *p, const char *key, char *val)
{
    static const char *const names[] = {"none", "periodic", "sync"};
    char *tok;

    if (single_token(p, key, val, &tok))
        return -1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!strcmp(tok, names[i])) {
            p->c->durability = (enum durability)i;
            return 0;
        }
    }
    return fail(p, key, "expected none, periodic or sync, got '%s'", tok);
}

static int k_set_tcp_nodelay(struct parser *p, const char *key, char *val)
{
    return get_bool(p, key, val, &p->c->set_tcp_nodelay);
}

static int k_connection_messages(struct parser *p, const char *key, char *val)
{
    return get_bool(p, key, val, &p->c->connection_messages);
}

static int k_log_timestamp(struct parser *p, const char *key, char *val)
{
    return get_bool(p, key, val, &p->c->log_timestamp);
}

static int k_log_timestamp_format(struct parser *p, const char *key, char *val)
{
    return get_string(p, key, val, &p->c->log_timestamp_format, true);
}

static int k_log_type(struct parser *p, const char *key, char *val)
{
    static const struct { const char *name; uint32_t bits; } types[] = {
        { "error", LOG_T_ERROR }, { "warning", LOG_T_WARNING },
        { "notice", LOG_T_NOTICE }, { "information", LOG_T_INFO },
        { "debug", LOG_T_DEBUG }, { "subscribe", LOG_T_SUBSCRIBE },
        { "unsubscribe", LOG_T_UNSUBSCRIBE }, { "all", LOG_T_ALL },
        { "none", 0 }, { "websockets", 0 },
    };
    char *rest = val, *tok;
    size_t i;

    if (need_value(p, key, val))
        return -1;
    if (!p->log_type_set) {
        p->c->log_type = 0;
        p->log_type_set = true;
    }
    while ((tok = next_token(&rest))) {
        for (i = 0; i < sizeof types / sizeof types[0]; i++)
            if (!strcmp(tok, types[i].name))
                break;
        if (i == sizeof types / sizeof types[0])
            return fail(p, key, "unknown log type '%s'", tok);
        if (!strcmp(tok, "none"))
            p->c->log_type = 0;
        else if (!strcmp(tok, "websockets"))
            warn(p, key, "websockets: not supported yet, ignored");
        else
            p->c->log_type |= types[i].bits;
    }
    return 0;
}

static int k_log_dest(struct parser *p, const char *key, char *val)
{
    struct config *c = p->c;
    char *rest = val, *tok;

    if (need_value(p, key, val))
        return -1;
    if (!p->log_dest_set) {
        c->log_dest = 0;
        p->log_dest_set = true;
    }
    while ((tok = next_token(&rest))) {
        uint32_t bit = 0;

        if (!strcmp(tok, "stderr")) {
            bit = LOG_D_STDERR;
        } else if (!strcmp(tok, "stdout")) {
            bit = LOG_D_STDOUT;
        } else if (!strcmp(tok, "syslog")) {
            bit = LOG_D_SYSLOG;
        } else if (!strcmp(tok, "file")) {
            if (!*rest)
                return fail(p, key, "file needs a path");
            if (c->log_file)
                return fail(p, key, "only one log file may be configured "
                            "(already '%s')", c->log_file);
            c->log_file = strdup(rest);
            if (!c->log_file)
                return fail(p, key, "out of memory");
            rest += strlen(rest);
            bit = LOG_D_FILE;
        } else if (!strcmp(tok, "none")) {
            c->log_dest = LOG_D_NONE;
            continue;
        } else if (!strcmp(tok, "topic") || !strcmp(tok, "dlt")) {
            warn(p, key, "%s: not supported yet, ignored", tok);
            continue;
        } else {
            return fail(p, key, "unknown log destination '%s'", tok);
        }
        c->log_dest = (c->log_dest & ~(uint32_t)LOG_D_NONE) | bit;
    }
    return 0;
}

static int k_pid_file(struct parser *p, const char *key, char *val)
{
    return get_string(p, key, val, &p->c->pid_file, false);
}

static int k_user(struct parser *p, const char *key, char *val)
{
    char *tok;

    if (single_token(p, key, val, &tok))
        return -1;
    return get_string(p, key, tok, &p->c->user, false);
}

static int k_shared_strategy(struct parser *p, const char *key, char *val)
{
    static const char *const names[] = {
        [SHARED_ROUND_ROBIN] = "round_robin", [SHARED_RANDOM] = "random",
        [SHARED_LEAST_INFLIGHT] = "least_inflight", [SHARED_STICKY] = "sticky",
    };
    char *tok;
    size_t i;

    if (single_token(p, key, val, &tok))
        return -1;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strcmp(tok, names[i])) {
            p->c->shared_subscription_strategy = (enum shared_strategy)i;
            return 0;
        }
    }
    return fail(p, key, "expected round_robin, random, least_inflight or sticky, got '%s'", tok);
}

static int k_connection(struct parser *p, const char *key, char *val)
{
    if (need_value(p, key, val))
        return -1;
    p->seen_bridge = true;
    warn(p, key, "bridge '%s': bridges are not supported yet, this bridge and "
         "its options are ignored", val);
    return 0;
}

/* include_dir sorts like Mosquitto: alphabetically ignoring case, and for
 * names that differ only in case, upper case first. */
static int include_name_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int r = strcasecmp(x, y);

    return r ? r : strcmp(x, y);
}

static int k_include_dir(struct parser *p, const char *key, char *val)
{
    char **names = NULL, **grown, *path = NULL;
    size_t count = 0, i, dirlen;
    struct dirent *de;
    DIR *dir = NULL;
    const char *saved_file = p->file;
    int saved_line = p->line, rc = -1;

    if (need_value(p, key, val))
        return -1;
    if (p->depth > 0)
        return fail(p, key, "only allowed in the main configuration file");
    dir = opendir(val);
    if (!dir)
        return fail(p, key, "cannot open directory '%s': %s", val, strerror(errno));
    while ((de = readdir(dir))) {
        size_t n = strlen(de->d_name);

        if (n <= 5 || strcmp(de->d_name + n - 5, ".conf"))
            continue;
        grown = realloc(names, (count + 1) * sizeof *names);
        if (!grown) {
            fail(p, key, "out of memory");
            goto out;
        }
        names = grown;
        names[count] = strdup(de->d_name);
        if (!names[count]) {
            fail(p, key, "out of memory");
            goto out;
        }
        count++;
    }
    if (count)
        qsort(names, count, sizeof *names, include_name_cmp);

    dirlen = strlen(val);
    while (dirlen > 1 && val[dirlen - 1] == '/')
        dirlen--;
    p->depth++;
    for (i = 0; i < count; i++) {
        struct stat st;
        size_t need = dirlen + strlen(names[i]) + 2;

        free(path);
        path = malloc(need);
        if (!path) {
            fail(p, key, "out of memory");
            goto out_depth;
        }
        snprintf(path, need, "%.*s/%s", (int)dirlen, val, names[i]);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (p->main_known && st.st_dev == p->main_dev && st.st_ino == p->main_ino) {
            warn(p, key, "'%s' is the main configuration file, skipped", path);
            continue;
        }
        if (parse_file(p, path))
            goto out_depth;
        p->file = saved_file;
        p->line = saved_line;
    }
    rc = 0;
out_depth:
    p->depth--;
out:
    if (rc == 0) {
        p->file = saved_file;
        p->line = saved_line;
    }
    free(path);
    for (i = 0; i < count; i++)
        free(names[i]);
    free(names);
    if (dir)
        closedir(dir);
    return rc;
}

/* ---- the key table -------------------------------------------------------- */

#define IMPL(name, fn) { name, KEY_IMPL, fn, 0, 0, 0, 0 }
#define NUM(name, field, lo, hi) \
    { name, KEY_NUMBER, NULL, offsetof(struct config, field), \
      sizeof(((struct config *)0)->field), lo, hi }
#define UNSUP(name) { name, KEY_UNSUPPORTED, NULL, 0, 0, 0, 0 }
#define TLS(name) { name, KEY_TLS, NULL, 0, 0, 0, 0 }
#define BRIDGE(name) { name, KEY_BRIDGE, NULL, 0, 0, 0, 0 }

static const struct key_def keys[] = {
    /* Implemented. */
    IMPL("listener", k_listener),
    IMPL("port", k_port),
    IMPL("bind_address", k_bind_address),
    IMPL("socket_domain", k_socket_domain),
    IMPL("protocol", k_protocol),
    IMPL("mount_point", k_mount_point),
    IMPL("max_connections", k_max_connections),
    IMPL("max_qos", k_max_qos),
    IMPL("max_topic_alias", k_max_topic_alias),
    IMPL("per_listener_settings", k_per_listener_settings),
    IMPL("allow_anonymous", k_allow_anonymous),
    IMPL("password_file", k_password_file),
    IMPL("acl_file", k_acl_file),
    IMPL("allow_zero_length_clientid", k_allow_zero_length_clientid),
    IMPL("auto_id_prefix", k_auto_id_prefix),
    IMPL("max_packet_size", k_max_packet_size),
    NUM("message_size_limit", message_size_limit, 0, MQTT_MAX_PAYLOAD),
    NUM("max_inflight_messages", max_inflight_messages, 0, 65535),
    NUM("max_inflight_bytes", max_inflight_bytes, 0, LLONG_MAX),
    NUM("max_queued_messages", max_queued_messages, 0, UINT32_MAX),
    NUM("max_queued_bytes", max_queued_bytes, 0, LLONG_MAX),
    IMPL("queue_qos0_messages", k_queue_qos0_messages),
    NUM("max_keepalive", max_keepalive, 0, 65535),
    IMPL("retain_available", k_retain_available),
    IMPL("upgrade_outgoing_qos", k_upgrade_outgoing_qos),
    IMPL("persistent_client_expiration", k_persistent_client_expiration),
    NUM("sys_interval", sys_interval, 0, INT_MAX),
    IMPL("set_tcp_nodelay", k_set_tcp_nodelay),
    IMPL("connection_messages", k_connection_messages),
    IMPL("log_type", k_log_type),
    IMPL("log_dest", k_log_dest),
    IMPL("log_timestamp", k_log_timestamp),
    IMPL("log_timestamp_format", k_log_timestamp_format),
    NUM("log_facility", log_facility, 0, 7),
    IMPL("pid_file", k_pid_file),
    IMPL("user", k_user),
    IMPL("include_dir", k_include_dir),
    IMPL("connection", k_connection),
    IMPL("persistence", k_persistence),
    IMPL("persistence_location", k_persistence_location),
    IMPL("persistence_file", k_persistence_file),
    /* Petrel's own keys. */
    NUM("workers", workers, 0, 1024),
    IMPL("durability", k_durability),
    NUM("durability_interval", durability_interval, 1, 3600000),
    NUM("store_cache_size", store_cache_size, 4 << 20, LLONG_MAX),
    NUM("store_min_free", store_min_free, 0, LLONG_MAX),
    NUM("store_queue_memory", store_queue_memory, 0, LLONG_MAX),
    IMPL("shared_subscription_strategy", k_shared_strategy),

    /* Mosquitto keys that are accepted and ignored with a warning. */
    UNSUP("allow_duplicate_messages"),
    UNSUP("auth_plugin"),
    UNSUP("auth_plugin_deny_special_chars"),
    UNSUP("autosave_interval"),
    UNSUP("autosave_on_changes"),
    UNSUP("check_retain_source"),
    UNSUP("clientid_prefixes"),
    UNSUP("memory_limit"),
    UNSUP("psk_file"),
    UNSUP("plugin"),
    UNSUP("global_plugin"),
    UNSUP("retained_persistence"),
    UNSUP("websockets_log_level"),
    UNSUP("websockets_headers_size"),
    UNSUP("websockets_origin"),
    UNSUP("http_dir"),
    UNSUP("bind_interface"),
    UNSUP("use_username_as_clientid"),
    UNSUP("accept_protocol_versions"),
    UNSUP("global_max_clients"),
    UNSUP("global_max_connections"),
    UNSUP("retry_interval"),
    UNSUP("store_clean_interval"),
    UNSUP("trace_level"),
    TLS("cafile"),
    TLS("capath"),
    TLS("certfile"),
    TLS("keyfile"),
    TLS("ciphers"),
    TLS("ciphers_tls1.3"),
    TLS("crlfile"),
    TLS("dhparamfile"),
    TLS("psk_hint"),
    TLS("require_certificate"),
    TLS("tls_engine"),
    TLS("tls_engine_kpass_sha1"),
    TLS("tls_keyform"),
    TLS("tls_version"),
    TLS("use_identity_as_username"),
    TLS("use_subject_as_username"),
    TLS("disable_client_cert_date_checks"),

    /* Bridge keys: only after `connection`, ignored with the bridge. */
    BRIDGE("address"),
    BRIDGE("addresses"),
    BRIDGE("bridge_alpn"),
    BRIDGE("bridge_attempt_unsubscribe"),
    BRIDGE("bridge_bind_address"),
    BRIDGE("bridge_cafile"),
    BRIDGE("bridge_capath"),
    BRIDGE("bridge_certfile"),
    BRIDGE("bridge_ciphers"),
    BRIDGE("bridge_ciphers_tls1.3"),
    BRIDGE("bridge_identity"),
    BRIDGE("bridge_insecure"),
    BRIDGE("bridge_keyfile"),
    BRIDGE("bridge_max_packet_size"),
    BRIDGE("bridge_max_topic_alias"),
    BRIDGE("bridge_outgoing_retain"),
    BRIDGE("bridge_protocol_version"),
    BRIDGE("bridge_psk"),
    BRIDGE("bridge_receive_maximum"),
    BRIDGE("bridge_reload_type"),
    BRIDGE("bridge_require_ocsp"),
    BRIDGE("bridge_session_expiry_interval"),
    BRIDGE("bridge_tcp_keepalive"),
    BRIDGE("bridge_tcp_user_timeout"),
    BRIDGE("bridge_tls_version"),
    BRIDGE("cleansession"),
    BRIDGE("clientid"),
    BRIDGE("idle_timeout"),
    BRIDGE("keepalive_interval"),
    BRIDGE("local_cleansession"),
    BRIDGE("local_clientid"),
    BRIDGE("local_password"),
    BRIDGE("local_username"),
    BRIDGE("notifications"),
    BRIDGE("notifications_local_only"),
    BRIDGE("notification_topic"),
    BRIDGE("password"),
    BRIDGE("remote_clientid"),
    BRIDGE("remote_password"),
    BRIDGE("remote_username"),
    BRIDGE("restart_timeout"),
    BRIDGE("round_robin"),
    BRIDGE("start_type"),
    BRIDGE("threshold"),
    BRIDGE("topic"),
    BRIDGE("try_private"),
    BRIDGE("username"),
};

/* Option families passed to plugins: accepted with a warning. */
static const char *const unsupported_prefixes[] = {
    "auth_opt_", "plugin_opt_", "global_plugin_opt_",
};

static int set_number(struct parser *p, const struct key_def *d, const char *key, char *val)
{
    long long v = 0;
    if (get_number(p, key, val, d->min, d->max, &v))
        return -1;
    char *field = (char *)p->c + d->off;
    if (d->width == 2) {
        uint16_t x = (uint16_t)v;
        memcpy(field, &x, sizeof(x));
    } else if (d->width == 4) {
        uint32_t x = (uint32_t)v;
        memcpy(field, &x, sizeof(x));
    } else {
        uint64_t x = (uint64_t)v;
        memcpy(field, &x, sizeof(x));
    }
    return 0;
}

static const struct key_def *find_key(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(keys[i].name, name))
            return &keys[i];
    return NULL;
}

static int handle_line(struct parser *p, char *key, char *val)
{
    static const struct key_def prefixed = UNSUP("");
    const struct key_def *def = find_key(key);
    size_t i;

    for (i = 0; !def && i < sizeof unsupported_prefixes / sizeof unsupported_prefixes[0]; i++)
        if (!strncmp(key, unsupported_prefixes[i], strlen(unsupported_prefixes[i])))
            def = &prefixed;
    if (!def)
        return fail(p, NULL, "unknown key '%s'", key);

    switch (def->kind) {
    case KEY_IMPL:
        return def->fn(p, key, val);
    case KEY_NUMBER:
        return set_number(p, def, key, val);
    case KEY_TLS:
        if (p->cur >= 0)
            p->c->listeners[p->cur].tls_configured = true;
        else
            p->c->default_listener.tls_configured = true;
        warn(p, key, "TLS is not supported yet (the listener will not be opened)");
        return 0;
    case KEY_BRIDGE:
        if (!p->seen_bridge)
            return fail(p, key, "only valid in a bridge section (after 'connection')");
        return 0;
    case KEY_UNSUPPORTED:
    default:
        warn(p, key, "not supported yet, ignored");
        return 0;
    }
}

/* ---- files and buffers ---------------------------------------------------- */

/* Parses text (modified in place; text[len] must be writable and is set to
 * '\0'). */
static int parse_buffer(struct parser *p, char *text, size_t len)
{
    size_t pos = 0;

    text[len] = '\0';
    p->line = 0;
    while (pos < len) {
        char *line = text + pos, *nl = memchr(line, '\n', len - pos);
        size_t linelen = nl ? (size_t)(nl - line) : len - pos;
        char *key, *end;

        pos += linelen + (nl ? 1 : 0);
        p->line++;
        if (memchr(line, '\0', linelen))
            return fail(p, NULL, "invalid NUL byte in line");
        line[linelen] = '\0';
        end = line + linelen;
        while (end > line && (is_space(end[-1])))
            *--end = '\0';
        line = skip_space(line);
        if (!*line || *line == '#')
            continue;
        key = next_token(&line);
        if (handle_line(p, key, line))
            return -1;
    }
    return 0;
}

static int read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL, *grown;
    size_t len = 0, cap = 0, n;
    int rc = -1;

    if (!f)
        return set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            if (cap > CONFIG_MAX_FILE_SIZE + 1) {
                set_err(err, errlen, "%s: file too large", path);
                goto out;
            }
            grown = realloc(buf, cap);
            if (!grown) {
                set_err(err, errlen, "%s: out of memory", path);
                goto out;
            }
            buf = grown;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        set_err(err, errlen, "%s: read error: %s", path, strerror(errno));
        goto out;
    }
    *out = buf;
    *outlen = len;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    fclose(f);
    return rc;
}

static int parse_file(struct parser *p, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    int rc = -1;

    if (intern_file(p->c, path, &p->file))
        return set_err(p->err, p->errlen, "%s: out of memory", path);
    if (read_file(path, &text, &len, p->err, p->errlen))
        goto out;
    rc = parse_buffer(p, text, len);
out:
    free(text);
    return rc;
}

static void parser_init(struct parser *p, struct config *c, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->c = c;
    p->err = err;
    p->errlen = errlen;
    p->cur = -1;
    if (err && errlen)
        err[0] = '\0';
}

/* ---- public API ----------------------------------------------------------- */

void config_init(struct config *c)
{
    memset(c, 0, sizeof *c);
    security_init(&c->security);
    c->security.auto_id_prefix = strdup("auto-"); /* NULL on OOM: finalize retries */
    c->workers = 0;
    c->max_connections = -1;
    c->max_packet_size = 0;
    c->message_size_limit = 0;
    c->max_inflight_messages = 20;
    c->max_inflight_bytes = 0;
    c->max_queued_messages = 1000;
    c->max_queued_bytes = 0;
    c->queue_qos0_messages = false;
    c->max_keepalive = 65535;
    c->max_topic_alias = 10;
    c->retain_available = true;
    c->max_qos = 2;
    c->upgrade_outgoing_qos = false;
    c->persistent_client_expiration = -1;
    c->durability = DURABILITY_SYNC;
    c->durability_interval = 1000;
    c->store_cache_size = 64u << 20;
    c->store_queue_memory = 64u << 20;
    c->sys_interval = 10;
    c->set_tcp_nodelay = false;
    c->connection_messages = true;
    c->log_type = LOG_T_ERROR | LOG_T_WARNING | LOG_T_NOTICE | LOG_T_INFO;
    c->log_dest = LOG_D_STDERR;
    c->log_timestamp = true;
    c->log_facility = -1;
    c->shared_subscription_strategy = SHARED_ROUND_ROBIN;
    listener_init(&c->default_listener);
}

void config_free(struct config *c)
{
    size_t i;

    for (i = 0; i < c->listener_count; i++)
        listener_free(&c->listeners[i]);
    free(c->listeners);
    listener_free(&c->default_listener);
    security_free(&c->security);
    free(c->log_file);
    free(c->pid_file);
    free(c->persistence_location);
    free(c->persistence_file);
    free(c->user);
    free(c->log_timestamp_format);
    free(c->path);
    for (i = 0; i < c->file_count; i++)
        free(c->files[i]);
    free(c->files);
    memset(c, 0, sizeof *c);
}

int config_load(struct config *c, const char *path, char *err, size_t errlen)
{
    struct parser p;
    struct stat st;

    parser_init(&p, c, err, errlen);
    if (!c->path && !(c->path = strdup(path)))
        return set_err(err, errlen, "%s: out of memory", path);
    if (stat(path, &st) == 0) {
        p.main_known = true;
        p.main_dev = st.st_dev;
        p.main_ino = st.st_ino;
    }
    return parse_file(&p, path);
}

int config_parse_string(struct config *c, const char *text, size_t len,
                        const char *name, char *err, size_t errlen)
{
    struct parser p;
    char *copy;
    int rc;

    parser_init(&p, c, err, errlen);
    if (!name)
        name = "(string)";
    if (!c->path && !(c->path = strdup(name)))
        return set_err(err, errlen, "%s: out of memory", name);
    if (intern_file(c, name, &p.file))
        return set_err(err, errlen, "%s: out of memory", name);
    copy = malloc(len + 1);
    if (!copy)
        return set_err(err, errlen, "%s: out of memory", name);
    if (len)
        memcpy(copy, text, len);
    rc = parse_buffer(&p, copy, len);
    free(copy);
    return rc;
}

int config_add_cmdline_port(struct config *c, int port, char *err, size_t errlen)
{
    if (port < 1 || port > 65535)
        return set_err(err, errlen, "-p: invalid port %d (1 to 65535)", port);
    if (c->cmdline_port_count >= CONFIG_MAX_CMDLINE_PORTS)
        return set_err(err, errlen, "-p: at most %d ports may be given",
                       CONFIG_MAX_CMDLINE_PORTS);
    c->cmdline_ports[c->cmdline_port_count++] = port;
    return 0;
}

static int add_local_listener(struct config *c, int port)
{
    struct listener_conf *arr = realloc(c->listeners, (c->listener_count + 1) * sizeof *arr);

    if (!arr)
        return -1;
    c->listeners = arr;
    listener_init(&arr[c->listener_count]);
    arr[c->listener_count].port = port;
    arr[c->listener_count].address = strdup("127.0.0.1");
    if (!arr[c->listener_count].address)
        return -1;
    c->listener_count++;
    return 0;
}

/* Fills unset security values in s; copies from `from` when not NULL. */
static int resolve_security(struct security_conf *s, const struct security_conf *from,
                            bool local_only)
{
    if (from) {
        security_free(s);
        s->allow_anonymous = from->allow_anonymous;
        s->allow_zero_length_clientid = from->allow_zero_length_clientid;
        if ((from->password_file && !(s->password_file = strdup(from->password_file)))
            || (from->acl_file && !(s->acl_file = strdup(from->acl_file)))
            || (from->auto_id_prefix && !(s->auto_id_prefix = strdup(from->auto_id_prefix))))
            return -1;
    }
    if (s->allow_anonymous < 0)
        s->allow_anonymous = local_only ? 1 : 0;
    if (!s->auto_id_prefix && !(s->auto_id_prefix = strdup("auto-")))
        return -1;
    return 0;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

int config_finalize(struct config *c, char *err, size_t errlen)
{
    size_t i, j;

    if (err && errlen)
        err[0] = '\0';
    if (c->listener_count == 0 && !c->default_listener_used) {
        /* Nothing configured: local-only mode, as Mosquitto 2. */
        c->local_only = true;
        if (c->cmdline_port_count == 0) {
            if (add_local_listener(c, CONFIG_DEFAULT_PORT))
                goto oom;
        }
        for (i = 0; i < c->cmdline_port_count; i++)
            if (add_local_listener(c, c->cmdline_ports[i]))
                goto oom;
    } else if (c->cmdline_port_count && c->default_listener_used) {
        c->default_listener.port = c->cmdline_ports[0];
        if (c->cmdline_port_count > 1)
            log_warning("-p: only the first port replaces the default listener's "
                        "port; the others are ignored");
    } else if (c->cmdline_port_count) {
        log_warning("-p ignored: the configuration file defines listeners");
    }
    c->cmdline_port_count = 0;

    if (c->default_listener_used) {
        struct listener_conf *arr = realloc(c->listeners, (c->listener_count + 1) * sizeof *arr);

        if (!arr)
            goto oom;
        c->listeners = arr;
        memmove(arr + 1, arr, c->listener_count * sizeof *arr);
        arr[0] = c->default_listener;
        if (arr[0].port == 0)
            arr[0].port = CONFIG_DEFAULT_PORT;
        c->listener_count++;
        listener_init(&c->default_listener);
        c->default_listener_used = false;
    }

    if (resolve_security(&c->security, NULL, c->local_only))
        goto oom;
    for (i = 0; i < c->listener_count; i++) {
        struct listener_conf *l = &c->listeners[i];

        if (!l->max_qos_set)
            l->max_qos = c->max_qos;
        if (!l->max_topic_alias_set)
            l->max_topic_alias = c->max_topic_alias;
        l->max_qos_set = l->max_topic_alias_set = true;
        if (resolve_security(&l->security, c->per_listener_settings ? NULL : &c->security,
                             c->local_only))
            goto oom;
        for (j = 0; j < i; j++) {
            const struct listener_conf *o = &c->listeners[j];

            if (o->port == l->port && same_str(o->address, l->address)
                && same_str(o->unix_path, l->unix_path)) {
                return set_err(err, errlen, "%s:%d: listener: %s %d%s%s is already "
                               "configured at %s:%d",
                               l->file ? l->file : "(command line)", l->line,
                               l->unix_path ? "unix socket" : "port", l->port,
                               l->unix_path || l->address ? " " : "",
                               l->unix_path ? l->unix_path : l->address ? l->address : "",
                               o->file ? o->file : "(default)", o->line);
            }
        }
    }
    return 0;
oom:
    return set_err(err, errlen, "out of memory");
}
