/* test_config.c - unit tests for the configuration parser (src/conf/config.c)
 * and the log module (src/util/log.c). */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"
#include "test.h"
#include "util/log.h"

static char tmpdir[256];  /* per-run scratch directory */
static char logpath[300]; /* the log is captured here */

/* ---- helpers ------------------------------------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf) {
            size_t got = fread(buf, 1, (size_t)n, f);
            buf[got] = '\0';
        }
    }
    fclose(f);
    return buf;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (!f)
        return;
    fputs(text, f);
    fclose(f);
}

/* Sends the log (all types) to logpath, truncating it. */
static void capture_log(void)
{
    struct config lc;

    unlink(logpath);
    config_init(&lc);
    lc.log_dest = LOG_D_FILE;
    lc.log_file = strdup(logpath);
    lc.log_type = LOG_T_ALL;
    if (log_configure(&lc) != 0)
        fprintf(stderr, "cannot log to %s\n", logpath);
    config_free(&lc);
}

static int log_contains(const char *needle)
{
    char *text = slurp(logpath);
    int found = text && strstr(text, needle) != NULL;

    free(text);
    return found;
}

/* Parses text as "test.conf"; returns the parse result; err gets the message. */
static int parse(struct config *c, const char *text, char *err, size_t errlen)
{
    config_init(c);
    return config_parse_string(c, text, strlen(text), "test.conf", err, errlen);
}

/* Parse + finalize, expecting success. */
static int parse_ok(struct config *c, const char *text)
{
    char err[512];
    int rc = parse(c, text, err, sizeof err);

    if (rc == 0)
        rc = config_finalize(c, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "unexpected error: %s\n", err);
    return rc;
}

/* Expects parsing to fail with exactly `want` as the message. */
static int parse_fails_with(const char *text, const char *want)
{
    struct config c;
    char err[512] = "";
    int rc = parse(&c, text, err, sizeof err);

    config_free(&c);
    if (rc == 0) {
        fprintf(stderr, "expected failure for:\n%s", text);
        return 0;
    }
    if (want && strcmp(err, want) != 0) {
        fprintf(stderr, "error was   '%s'\nexpected    '%s'\n", err, want);
        return 0;
    }
    return 1;
}

/* Expects failure with a message starting "test.conf:LINE: KEY: ". */
static int fails_at(const char *text, int line, const char *key)
{
    struct config c;
    char err[512] = "", prefix[128];
    int rc = parse(&c, text, err, sizeof err);

    config_free(&c);
    snprintf(prefix, sizeof prefix, "test.conf:%d: %s: ", line, key);
    if (rc == 0 || strncmp(err, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "for '%s' error was '%s', wanted prefix '%s'\n", text, err, prefix);
        return 0;
    }
    return 1;
}

/* ---- defaults and finalize ----------------------------------------------- */

TEST(defaults_after_init)
{
    struct config c;

    config_init(&c);
    CHECK_EQ(c.listener_count, 0);
    CHECK(!c.per_listener_settings);
    CHECK_EQ(c.workers, 0);
    CHECK_EQ(c.max_connections, -1);
    CHECK_EQ(c.max_packet_size, 0);
    CHECK_EQ(c.message_size_limit, 0);
    CHECK_EQ(c.max_inflight_messages, 20);
    CHECK_EQ(c.max_inflight_bytes, 0);
    CHECK_EQ(c.max_queued_messages, 1000);
    CHECK_EQ(c.max_queued_bytes, 0);
    CHECK(!c.queue_qos0_messages);
    CHECK_EQ(c.max_keepalive, 65535);
    CHECK_EQ(c.max_topic_alias, 10);
    CHECK(c.retain_available);
    CHECK_EQ(c.max_qos, 2);
    CHECK(!c.upgrade_outgoing_qos);
    CHECK_EQ(c.persistent_client_expiration, -1);
    CHECK_EQ(c.sys_interval, 10);
    CHECK(!c.set_tcp_nodelay);
    CHECK(c.connection_messages);
    CHECK_EQ(c.log_type, LOG_T_ERROR | LOG_T_WARNING | LOG_T_NOTICE | LOG_T_INFO);
    CHECK_EQ(c.log_dest, LOG_D_STDERR);
    CHECK(c.log_file == NULL);
    CHECK(c.log_timestamp);
    CHECK(c.log_timestamp_format == NULL);
    CHECK_EQ(c.log_facility, -1);
    CHECK_EQ(c.shared_subscription_strategy, SHARED_ROUND_ROBIN);
    CHECK(c.pid_file == NULL);
    CHECK(c.user == NULL);
    CHECK(!c.daemon);
    CHECK_EQ(c.security.allow_anonymous, -1);
    CHECK(c.security.allow_zero_length_clientid);
    CHECK(c.security.auto_id_prefix && !strcmp(c.security.auto_id_prefix, "auto-"));
    CHECK(c.security.password_file == NULL);
    CHECK(c.security.acl_file == NULL);
    config_free(&c);
}

TEST(empty_config_gets_local_listener)
{
    struct config c;

    CHECK_EQ(parse_ok(&c, ""), 0);
    CHECK(c.local_only);
    CHECK_EQ(c.listener_count, 1);
    if (c.listener_count == 1) {
        struct listener_conf *l = &c.listeners[0];
        CHECK_EQ(l->port, 1883);
        CHECK(l->address && !strcmp(l->address, "127.0.0.1"));
        CHECK(l->unix_path == NULL);
        CHECK_EQ(l->protocol, LISTENER_MQTT);
        CHECK_EQ(l->max_connections, -1);
        CHECK_EQ(l->security.allow_anonymous, 1);
        CHECK(l->security.allow_zero_length_clientid);
        CHECK(l->security.auto_id_prefix && !strcmp(l->security.auto_id_prefix, "auto-"));
        CHECK_EQ(l->max_qos, 2);
        CHECK_EQ(l->max_topic_alias, 10);
    }
    CHECK_EQ(c.security.allow_anonymous, 1);
    config_free(&c);
}

TEST(comments_blank_lines_whitespace_crlf)
{
    struct config c;

    CHECK_EQ(parse_ok(&c, "# a comment\n\n   \t\n   # indented comment\r\n"
                          "  sys_interval   30  \r\n\tmax_qos 1\n"
                          "pid_file /run/petrel dir/petrel.pid   \n"
                          "workers 4"), 0);  /* no newline at the end */
    CHECK_EQ(c.sys_interval, 30);
    CHECK_EQ(c.max_qos, 1);
    CHECK(c.pid_file && !strcmp(c.pid_file, "/run/petrel dir/petrel.pid"));
    CHECK_EQ(c.workers, 4);
    config_free(&c);
}

TEST(port_only_binds_everywhere_and_denies_anonymous)
{
    struct config c;

    CHECK_EQ(parse_ok(&c, "port 1884\n"), 0);
    CHECK(!c.local_only);
    CHECK_EQ(c.listener_count, 1);
    if (c.listener_count == 1) {
        CHECK_EQ(c.listeners[0].port, 1884);
        CHECK(c.listeners[0].address == NULL);
        CHECK_EQ(c.listeners[0].security.allow_anonymous, 0);
        CHECK(c.listeners[0].file && !strcmp(c.listeners[0].file, "test.conf"));
        CHECK_EQ(c.listeners[0].line, 1);
    }
    CHECK_EQ(c.security.allow_anonymous, 0);
    config_free(&c);
}

TEST(bind_address_default_port)
{
    struct config c;

    CHECK_EQ(parse_ok(&c, "bind_address 10.0.0.1\n"), 0);
    CHECK_EQ(c.listener_count, 1);
    if (c.listener_count == 1) {
        CHECK_EQ(c.listeners[0].port, 1883);
        CHECK(c.listeners[0].address && !strcmp(c.listeners[0].address, "10.0.0.1"));
    }
    config_free(&c);

    /* bind_address applies to the default listener even inside a block. */
    CHECK_EQ(parse_ok(&c, "listener 8883\nbind_address ::1\nport 1999\n"), 0);
    CHECK_EQ(c.listener_count, 2);
    if (c.listener_count == 2) {
        CHECK_EQ(c.listeners[0].port, 1999);
        CHECK(c.listeners[0].address && !strcmp(c.listeners[0].address, "::1"));
        CHECK_EQ(c.listeners[1].port, 8883);
        CHECK(c.listeners[1].address == NULL);
    }
    config_free(&c);
}

TEST(allow_anonymous_explicit_true_with_listeners)
{
    struct config c;

    CHECK_EQ(parse_ok(&c, "listener 1883\nallow_anonymous true\n"), 0);
    CHECK_EQ(c.listeners[0].security.allow_anonymous, 1);
    config_free(&c);
    CHECK_EQ(parse_ok(&c, "allow_anonymous false\n"), 0);
    CHECK(c.local_only);
    CHECK_EQ(c.listeners[0].security.allow_anonymous, 0);
    config_free(&c);
}

/* ---- listeners ------------------------------------------------------------ */

TEST(several_listeners)
{
    struct config c;

    CHECK_EQ(parse_ok(&c,
        "max_connections 500\n"
        "max_qos 1\n"
        "max_topic_alias 5\n"
        "listener 1883 0.0.0.0\n"
        "max_connections 100\n"
        "mount_point tenant/a/\n"
        "socket_domain ipv4\n"
        "listener 8080 ::\n"
        "protocol websockets\n"
        "socket_domain ipv6\n"
        "max_qos 0\n"
        "max_topic_alias 0\n"
        "listener 0 /run/petrel/petrel.sock\n"
        "protocol mqtt\n"
        "listener 1884 fe80::1%eth0\n"), 0);
    CHECK(!c.local_only);
    CHECK_EQ(c.max_connections, 500);
    CHECK_EQ(c.listener_count, 4);
    if (c.listener_count == 4) {
        struct listener_conf *l = c.listeners;
        CHECK_EQ(l[0].port, 1883);
        CHECK(!strcmp(l[0].address, "0.0.0.0"));
        CHECK_EQ(l[0].max_connections, 100);
        CHECK(l[0].mount_point && !strcmp(l[0].mount_point, "tenant/a/"));
        CHECK_EQ(l[0].socket_domain, AF_INET);
        CHECK_EQ(l[0].protocol, LISTENER_MQTT);
        CHECK_EQ(l[0].max_qos, 1);          /* inherited from the global value */
        CHECK_EQ(l[0].max_topic_alias, 5);
        CHECK_EQ(l[0].line, 4);

        CHECK_EQ(l[1].port, 8080);
        CHECK(!strcmp(l[1].address, "::"));
        CHECK_EQ(l[1].protocol, LISTENER_WEBSOCKETS);
        CHECK_EQ(l[1].socket_domain, AF_INET6);
        CHECK_EQ(l[1].max_connections, -1);
        CHECK(l[1].mount_point == NULL);
        CHECK_EQ(l[1].max_qos, 0);
        CHECK_EQ(l[1].max_topic_alias, 0);

        CHECK_EQ(l[2].port, 0);
        CHECK(l[2].address == NULL);
        CHECK(l[2].unix_path && !strcmp(l[2].unix_path, "/run/petrel/petrel.sock"));

        CHECK_EQ(l[3].port, 1884);
        CHECK(!strcmp(l[3].address, "fe80::1%eth0"));
        CHECK_EQ(l[3].socket_domain, 0);
    }
    config_free(&c);
}

TEST(listener_keys_before_first_listener_make_default_listener)
{
    struct config c;

    CHECK_EQ(parse_ok(&c, "mount_point dflt/\nlistener 1884\n"), 0);
    CHECK_EQ(c.listener_count, 2);
    if (c.listener_count == 2) {
        CHECK_EQ(c.listeners[0].port, 1883);
        CHECK(c.listeners[0].address == NULL);
        CHECK(!strcmp(c.listeners[0].mount_point, "dflt/"));
        CHECK_EQ(c.listeners[1].port, 1884);
        CHECK(c.listeners[1].mount_point == NULL);
    }
    config_free(&c);
}

TEST(listener_errors)
{
    CHECK(fails_at("listener\n", 1, "listener"));
    CHECK(fails_at("listener abc\n", 1, "listener"));
    CHECK(fails_at("listener 65536\n", 1, "listener"));
    CHECK(fails_at("listener -1\n", 1, "listener"));
    CHECK(fails_at("listener 0\n", 1, "listener"));
    CHECK(fails_at("listener 1883\nsocket_domain ipv5\n", 2, "socket_domain"));
    CHECK(fails_at("listener 1883\nprotocol http\n", 2, "protocol"));
    CHECK(fails_at("listener 1883\nmount_point a/#\n", 2, "mount_point"));
    CHECK(fails_at("listener 1883\nmount_point a/\nmount_point b/\n", 3, "mount_point"));
    CHECK(fails_at("port 0\n", 1, "port"));
    CHECK(fails_at("port 70000\n", 1, "port"));
    CHECK(fails_at("bind_address a\nbind_address b\n", 2, "bind_address"));
    CHECK(fails_at("max_connections -2\n", 1, "max_connections"));
    CHECK(fails_at("max_connections lots\n", 1, "max_connections"));
}

TEST(duplicate_listener_rejected_at_finalize)
{
    struct config c;
    char err[512];

    CHECK_EQ(parse(&c, "listener 1883\nlistener 1884\nlistener 1883\n", err, sizeof err), 0);
    CHECK_EQ(config_finalize(&c, err, sizeof err), -1);
    CHECK(!strcmp(err, "test.conf:3: listener: port 1883 is already configured at test.conf:1"));
    config_free(&c);

    CHECK_EQ(parse(&c, "listener 0 /tmp/x.sock\nlistener 0 /tmp/x.sock\n", err, sizeof err), 0);
    CHECK_EQ(config_finalize(&c, err, sizeof err), -1);
    config_free(&c);

    CHECK_EQ(parse(&c, "listener 1883 127.0.0.1\nlistener 1883 ::1\n", err, sizeof err), 0);
    CHECK_EQ(config_finalize(&c, err, sizeof err), 0);
    config_free(&c);
}

TEST(hand_made_listener_inherits_globals)
{
    struct config c;
    char err[256];

    /* A listener added by a caller with memset(0) gets the global limits. */
    CHECK_EQ(parse(&c, "max_qos 1\nmax_topic_alias 7\nlistener 1883\nmax_qos 2\n", err, sizeof err), 0);
    struct listener_conf *arr = realloc(c.listeners, 2 * sizeof *arr);
    CHECK(arr != NULL);
    if (!arr) {
        config_free(&c);
        return;
    }
    c.listeners = arr;
    memset(&arr[1], 0, sizeof arr[1]);
    arr[1].port = 1884;
    arr[1].security.allow_anonymous = -1;
    c.listener_count = 2;
    CHECK_EQ(config_finalize(&c, err, sizeof err), 0);
    CHECK_EQ(c.listeners[0].max_qos, 2);
    CHECK_EQ(c.listeners[0].max_topic_alias, 7);
    CHECK_EQ(c.listeners[1].max_qos, 1);
    CHECK_EQ(c.listeners[1].max_topic_alias, 7);
    CHECK(c.listeners[1].security.auto_id_prefix && !strcmp(c.listeners[1].security.auto_id_prefix, "auto-"));
    CHECK_EQ(config_finalize(&c, err, sizeof err), 0); /* a second finalize is harmless */
    CHECK_EQ(c.listener_count, 2);
    config_free(&c);
}

TEST(tls_keys_flag_the_listener)
{
    struct config c;

    capture_log();
    CHECK_EQ(parse_ok(&c, "listener 1883\nlistener 8883\ncertfile /etc/x.pem\nkeyfile /etc/x.key\n"), 0);
    CHECK_EQ(c.warning_count, 2);
    CHECK(!c.listeners[0].tls_configured);
    CHECK(c.listeners[1].tls_configured);
    CHECK(log_contains("test.conf:3: certfile: TLS is not supported yet (the listener will not be opened)"));
    config_free(&c);
}

/* ---- security / per_listener_settings ------------------------------------ */

TEST(global_security_copied_to_listeners)
{
    struct config c;

    CHECK_EQ(parse_ok(&c,
        "listener 1883\n"
        "allow_anonymous true\n"
        "listener 1884\n"
        "password_file /etc/petrel/passwd\n"
        "acl_file /etc/petrel/acl file\n"
        "allow_zero_length_clientid false\n"
        "auto_id_prefix gen-\n"), 0);
    CHECK(!c.per_listener_settings);
    CHECK_EQ(c.security.allow_anonymous, 1);
    CHECK(!strcmp(c.security.password_file, "/etc/petrel/passwd"));
    CHECK_EQ(c.listener_count, 2);
    for (size_t i = 0; i < c.listener_count; i++) {
        struct security_conf *s = &c.listeners[i].security;
        CHECK_EQ(s->allow_anonymous, 1);
        CHECK(s->password_file && !strcmp(s->password_file, "/etc/petrel/passwd"));
        CHECK(s->acl_file && !strcmp(s->acl_file, "/etc/petrel/acl file"));
        CHECK(!s->allow_zero_length_clientid);
        CHECK(s->auto_id_prefix && !strcmp(s->auto_id_prefix, "gen-"));
        CHECK(s->password_file != c.security.password_file); /* own copies */
    }
    config_free(&c);
}

TEST(per_listener_security)
{
    struct config c;

    CHECK_EQ(parse_ok(&c,
        "per_listener_settings true\n"
        "listener 1883 127.0.0.1\n"
        "allow_anonymous true\n"
        "auto_id_prefix local-\n"
        "listener 8883\n"
        "password_file /etc/petrel/passwd\n"
        "acl_file /etc/petrel/acl\n"
        "allow_zero_length_clientid false\n"), 0);
    CHECK(c.per_listener_settings);
    CHECK_EQ(c.listener_count, 2);
    if (c.listener_count == 2) {
        struct security_conf *a = &c.listeners[0].security, *b = &c.listeners[1].security;
        CHECK_EQ(a->allow_anonymous, 1);
        CHECK(a->password_file == NULL);
        CHECK(a->allow_zero_length_clientid);
        CHECK(!strcmp(a->auto_id_prefix, "local-"));
        CHECK_EQ(b->allow_anonymous, 0); /* unset: false when listeners are configured */
        CHECK(!strcmp(b->password_file, "/etc/petrel/passwd"));
        CHECK(!strcmp(b->acl_file, "/etc/petrel/acl"));
        CHECK(!b->allow_zero_length_clientid);
        CHECK(!strcmp(b->auto_id_prefix, "auto-"));
    }
    CHECK(c.security.password_file == NULL);
    config_free(&c);

    /* The same keys twice are fine in different listeners... */
    CHECK_EQ(parse_ok(&c, "per_listener_settings true\nlistener 1\npassword_file a\n"
                          "listener 2\npassword_file b\n"), 0);
    config_free(&c);
    /* ...but not globally. */
    CHECK(fails_at("listener 1\npassword_file a\nlistener 2\npassword_file b\n", 4, "password_file"));
}

TEST(per_listener_settings_must_come_first)
{
    CHECK(fails_at("allow_anonymous true\nper_listener_settings true\n", 2, "per_listener_settings"));
    CHECK(fails_at("per_listener_settings maybe\n", 1, "per_listener_settings"));
    struct config c;
    CHECK_EQ(parse_ok(&c, "per_listener_settings false\nallow_anonymous true\n"
                          "per_listener_settings false\n"), 0);
    config_free(&c);
}

/* ---- every key: good and bad values ------------------------------------- */

TEST(global_keys_good_values)
{
    struct config c;

    CHECK_EQ(parse_ok(&c,
        "workers 8\n"
        "max_packet_size 1048576\n"
        "message_size_limit 268435455\n"
        "max_inflight_messages 0\n"
        "max_inflight_bytes 10000000000\n"
        "max_queued_messages 0\n"
        "max_queued_bytes 123456789012\n"
        "queue_qos0_messages true\n"
        "max_keepalive 60\n"
        "max_topic_alias 65535\n"
        "retain_available false\n"
        "max_qos 0\n"
        "upgrade_outgoing_qos true\n"
        "persistent_client_expiration 2d\n"
        "sys_interval 0\n"
        "set_tcp_nodelay true\n"
        "connection_messages false\n"
        "log_timestamp false\n"
        "log_timestamp_format %Y-%m-%dT%H:%M:%S\n"
        "log_facility 5\n"
        "pid_file /run/petrel.pid\n"
        "user petrel\n"
        "shared_subscription_strategy least_inflight\n"
        "max_connections 10\n"), 0);
    CHECK_EQ(c.workers, 8);
    CHECK_EQ(c.max_packet_size, 1048576);
    CHECK_EQ(c.message_size_limit, 268435455);
    CHECK_EQ(c.max_inflight_messages, 0);
    CHECK(c.max_inflight_bytes == 10000000000ULL);
    CHECK_EQ(c.max_queued_messages, 0);
    CHECK(c.max_queued_bytes == 123456789012ULL);
    CHECK(c.queue_qos0_messages);
    CHECK_EQ(c.max_keepalive, 60);
    CHECK_EQ(c.max_topic_alias, 65535);
    CHECK(!c.retain_available);
    CHECK_EQ(c.max_qos, 0);
    CHECK(c.upgrade_outgoing_qos);
    CHECK_EQ(c.persistent_client_expiration, 2 * 86400);
    CHECK_EQ(c.sys_interval, 0);
    CHECK(c.set_tcp_nodelay);
    CHECK(!c.connection_messages);
    CHECK(!c.log_timestamp);
    CHECK(c.log_timestamp_format && !strcmp(c.log_timestamp_format, "%Y-%m-%dT%H:%M:%S"));
    CHECK_EQ(c.log_facility, 5);
    CHECK(!strcmp(c.pid_file, "/run/petrel.pid"));
    CHECK(c.user && !strcmp(c.user, "petrel"));
    CHECK_EQ(c.shared_subscription_strategy, SHARED_LEAST_INFLIGHT);
    CHECK_EQ(c.max_connections, 10);
    config_free(&c);

    static const struct { const char *v; enum shared_strategy s; } st[] = {
        { "round_robin", SHARED_ROUND_ROBIN }, { "random", SHARED_RANDOM },
        { "least_inflight", SHARED_LEAST_INFLIGHT }, { "sticky", SHARED_STICKY },
    };
    for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "shared_subscription_strategy %s\n", st[i].v);
        CHECK_EQ(parse_ok(&c, text), 0);
        CHECK_EQ(c.shared_subscription_strategy, st[i].s);
        config_free(&c);
    }
}

TEST(numeric_limits_and_bad_values)
{
    static const struct { const char *line; const char *key; } bad[] = {
        { "workers -1", "workers" }, { "workers many", "workers" }, { "workers 100000", "workers" },
        { "max_packet_size 19", "max_packet_size" }, { "max_packet_size -5", "max_packet_size" },
        { "max_packet_size 4294967296", "max_packet_size" },
        { "message_size_limit 268435456", "message_size_limit" },
        { "max_inflight_messages 65536", "max_inflight_messages" },
        { "max_inflight_messages 1.5", "max_inflight_messages" },
        { "max_inflight_bytes -1", "max_inflight_bytes" },
        { "max_inflight_bytes 99999999999999999999", "max_inflight_bytes" },
        { "max_queued_messages -1", "max_queued_messages" },
        { "max_queued_bytes x", "max_queued_bytes" },
        { "queue_qos0_messages yes", "queue_qos0_messages" },
        { "max_keepalive 65536", "max_keepalive" },
        { "max_topic_alias 70000", "max_topic_alias" },
        { "retain_available 1", "retain_available" },
        { "max_qos 3", "max_qos" }, { "max_qos -1", "max_qos" },
        { "upgrade_outgoing_qos TRUE", "upgrade_outgoing_qos" },
        { "sys_interval -10", "sys_interval" },
        { "set_tcp_nodelay on", "set_tcp_nodelay" },
        { "connection_messages", "connection_messages" },
        { "log_timestamp no", "log_timestamp" },
        { "log_facility 8", "log_facility" },
        { "log_type everything", "log_type" },
        { "log_dest printer", "log_dest" }, { "log_dest file", "log_dest" },
        { "shared_subscription_strategy fastest", "shared_subscription_strategy" },
        { "allow_anonymous maybe", "allow_anonymous" },
        { "allow_zero_length_clientid 0", "allow_zero_length_clientid" },
        { "auto_id_prefix", "auto_id_prefix" },
        { "password_file", "password_file" }, { "acl_file", "acl_file" },
        { "pid_file", "pid_file" }, { "user", "user" },
        { "include_dir", "include_dir" }, { "connection", "connection" },
        { "persistent_client_expiration 5", "persistent_client_expiration" },
        { "persistent_client_expiration 5s", "persistent_client_expiration" },
        { "persistent_client_expiration d", "persistent_client_expiration" },
        { "persistent_client_expiration -3d", "persistent_client_expiration" },
        { "persistent_client_expiration 3dd", "persistent_client_expiration" },
        { "persistent_client_expiration 99999999999999999y", "persistent_client_expiration" },
        { "max_connections 2147483648", "max_connections" },
    };
    char text[256];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "# first line\n%s\n", bad[i].line);
        CHECK(fails_at(text, 2, bad[i].key));
    }
    CHECK(parse_fails_with("\n\nmax_qos 3\n", "test.conf:3: max_qos: 3 is out of range (0 to 2)"));
    CHECK(parse_fails_with("retain_available yes\n",
                           "test.conf:1: retain_available: expected true or false, got 'yes'"));
    CHECK(parse_fails_with("sys_interval ten\n", "test.conf:1: sys_interval: 'ten' is not a number"));
    CHECK(parse_fails_with("pid_file\n", "test.conf:1: pid_file: missing value"));
}

TEST(boundary_values_accepted)
{
    static const char *good[] = {
        "max_packet_size 20", "max_packet_size 0", "max_packet_size 4294967295",
        "message_size_limit 0", "max_inflight_messages 65535", "max_keepalive 0",
        "max_keepalive 65535", "max_topic_alias 0", "max_qos 2", "workers 0", "workers 1024",
        "max_connections -1", "max_connections 0", "sys_interval 2147483647",
        "log_facility 0", "log_facility 7", "listener 65535", "listener 1", "port 65535",
        "max_queued_messages 4294967295",
    };
    struct config c;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        CHECK_EQ(parse_ok(&c, good[i]), 0);
        config_free(&c);
    }
}

TEST(duration_suffixes)
{
    static const struct { const char *v; long long secs; } d[] = {
        { "1h", 3600 }, { "12h", 43200 }, { "14d", 14 * 86400 }, { "1w", 604800 },
        { "2m", 60 * 86400 }, { "1y", 365 * 86400 }, { "0d", -1 }, { "+2h", -2 },
    };
    struct config c;
    char text[128], err[256];

    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        snprintf(text, sizeof text, "persistent_client_expiration %s\n", d[i].v);
        int rc = parse(&c, text, err, sizeof err);
        if (d[i].secs == -2) {
            CHECK_EQ(rc, -1); /* the unit must follow plain digits */
        } else {
            CHECK_EQ(rc, 0);
            CHECK_EQ(c.persistent_client_expiration, d[i].secs);
        }
        config_free(&c);
    }
}

TEST(extra_tokens_warn)
{
    struct config c;

    capture_log();
    CHECK_EQ(parse_ok(&c, "max_qos 1 # comment\n"), 0);
    CHECK_EQ(c.max_qos, 1);
    CHECK_EQ(c.warning_count, 1);
    CHECK(log_contains("test.conf:1: max_qos: extra text '# comment' after the value ignored"));
    config_free(&c);
}

TEST(duplicate_string_keys)
{
    CHECK(parse_fails_with("pid_file /a\npid_file /b\n",
                           "test.conf:2: pid_file: duplicate value (already set to '/a')"));
    CHECK(fails_at("user a\nuser b\n", 2, "user"));
    struct config c;
    CHECK_EQ(parse_ok(&c, "auto_id_prefix a-\nauto_id_prefix b-\n"), 0); /* replaces */
    CHECK(!strcmp(c.security.auto_id_prefix, "b-"));
    config_free(&c);
}

/* ---- logging keys --------------------------------------------------------- */

TEST(log_type_and_log_dest)
{
    struct config c;

    CHECK_EQ(parse_ok(&c, "log_type error\nlog_type debug subscribe\n"), 0);
    CHECK_EQ(c.log_type, LOG_T_ERROR | LOG_T_DEBUG | LOG_T_SUBSCRIBE);
    config_free(&c);
    CHECK_EQ(parse_ok(&c, "log_type all\n"), 0);
    CHECK_EQ(c.log_type, LOG_T_ALL);
    config_free(&c);
    CHECK_EQ(parse_ok(&c, "log_type warning\nlog_type none\n"), 0);
    CHECK_EQ(c.log_type, 0);
    config_free(&c);
    CHECK_EQ(parse_ok(&c, "log_type notice\nlog_type information\nlog_type unsubscribe\n"), 0);
    CHECK_EQ(c.log_type, LOG_T_NOTICE | LOG_T_INFO | LOG_T_UNSUBSCRIBE);
    config_free(&c);
    CHECK_EQ(parse_ok(&c, "log_type warning\n"), 0);
    CHECK_EQ(c.log_type, LOG_T_WARNING);
    config_free(&c);

    CHECK_EQ(parse_ok(&c, "log_dest stdout\nlog_dest syslog\nlog_dest file /var/log/my petrel.log\n"), 0);
    CHECK_EQ(c.log_dest, LOG_D_STDOUT | LOG_D_SYSLOG | LOG_D_FILE);
    CHECK(c.log_file && !strcmp(c.log_file, "/var/log/my petrel.log"));
    config_free(&c);
    CHECK_EQ(parse_ok(&c, "log_dest stderr\nlog_dest none\n"), 0);
    CHECK_EQ(c.log_dest, LOG_D_NONE);
    config_free(&c);
    CHECK_EQ(parse_ok(&c, "log_dest none\nlog_dest stderr\n"), 0);
    CHECK_EQ(c.log_dest, LOG_D_STDERR);
    config_free(&c);
    CHECK(fails_at("log_dest file /a\nlog_dest file /b\n", 2, "log_dest"));

    capture_log();
    CHECK_EQ(parse_ok(&c, "log_dest topic\nlog_dest stderr\nlog_type websockets\n"), 0);
    CHECK_EQ(c.warning_count, 2);
    CHECK_EQ(c.log_dest, LOG_D_STDERR);
    CHECK(log_contains("test.conf:1: log_dest: topic: not supported yet, ignored"));
    config_free(&c);
}

/* ---- unsupported, unknown, bridges ---------------------------------------- */

TEST(unsupported_mosquitto_keys_warn)
{
    struct config c;

    capture_log();
    CHECK_EQ(parse_ok(&c,
        "persistence true\n"
        "persistence_location /var/lib/mosquitto/\n"
        "autosave_interval 1800\n"
        "auth_plugin /usr/lib/x.so\n"
        "auth_opt_db_host localhost\n"
        "plugin /usr/lib/mosquitto_dynamic_security.so\n"
        "plugin_opt_config_file /etc/dynsec.json\n"
        "memory_limit 0\n"
        "check_retain_source false\n"), 0);
    CHECK_EQ(c.warning_count, 7);
    CHECK(c.persistence);
    CHECK_STR(c.persistence_location, "/var/lib/mosquitto/");
    CHECK(log_contains("test.conf:3: autosave_interval: not supported yet, ignored"));
    CHECK(log_contains("test.conf:5: auth_opt_db_host: not supported yet, ignored"));
    CHECK(log_contains("test.conf:9: check_retain_source: not supported yet, ignored"));
    config_free(&c);
}

TEST(persistence_keys)
{
    struct config c;

    CHECK_EQ(parse_ok(&c, ""), 0);
    CHECK(!c.persistence);
    CHECK_EQ(c.durability, DURABILITY_SYNC);
    CHECK_EQ(c.durability_interval, 1000);
    CHECK_EQ(c.store_cache_size, 64u << 20);
    config_free(&c);
    CHECK_EQ(parse_ok(&c, "persistence true\npersistence_location data\n"
                          "persistence_file x.db\ndurability periodic\n"
                          "durability_interval 250\nstore_cache_size 8388608\n"), 0);
    CHECK(c.persistence);
    CHECK_STR(c.persistence_location, "data");
    CHECK_STR(c.persistence_file, "x.db");
    CHECK_EQ(c.durability, DURABILITY_PERIODIC);
    CHECK_EQ(c.durability_interval, 250);
    CHECK_EQ(c.store_cache_size, 8388608);
    config_free(&c);
    CHECK(parse_fails_with("durability always\n",
                           "test.conf:1: durability: expected none, periodic or sync, got 'always'"));
    CHECK(parse_fails_with("persistence_file a/b\n",
                           "test.conf:1: persistence_file: a name inside persistence_location, "
                           "not a path"));
    CHECK(parse_fails_with("durability_interval 0\n",
                           "test.conf:1: durability_interval: 0 is out of range (1 to 3600000)"));
    CHECK(parse_fails_with("store_cache_size 1000\n",
                           "test.conf:1: store_cache_size: 1000 is out of range "
                           "(4194304 to 9223372036854775807)"));
}

TEST(unknown_keys_fail)
{
    CHECK(parse_fails_with("sys_interval 5\nfoo bar\n", "test.conf:2: unknown key 'foo'"));
    CHECK(parse_fails_with("Port 1883\n", "test.conf:1: unknown key 'Port'"));
    CHECK(parse_fails_with("daemon true\n", "test.conf:1: unknown key 'daemon'"));
    CHECK(parse_fails_with("auth_opt\n", "test.conf:1: unknown key 'auth_opt'"));
    struct config c;
    char err[256];
    static const char nul_text[] = "sys_interval 5\nmax\0_qos 1\n";
    config_init(&c);
    CHECK_EQ(config_parse_string(&c, nul_text, sizeof nul_text - 1, "n.conf", err, sizeof err), -1);
    CHECK(!strcmp(err, "n.conf:2: invalid NUL byte in line"));
    config_free(&c);
}

TEST(bridge_sections_skipped)
{
    struct config c;

    capture_log();
    CHECK_EQ(parse_ok(&c,
        "listener 1883\n"
        "connection upstream\n"
        "address broker.example.com:1883\n"
        "topic sensors/# out 1 local/ remote/\n"
        "remote_username bridge\n"
        "remote_password secret\n"
        "bridge_protocol_version mqttv50\n"
        "cleansession true\n"
        "sys_interval 20\n"             /* a general key still applies */
        "connection second\n"
        "addresses a:1883 b:1883\n"
        "round_robin true\n"
        "listener 1884\n"
        "max_connections 5\n"), 0);
    CHECK_EQ(c.warning_count, 2);
    CHECK_EQ(c.sys_interval, 20);
    CHECK_EQ(c.listener_count, 2);
    CHECK_EQ(c.listeners[1].max_connections, 5);
    CHECK(log_contains("test.conf:2: connection: bridge 'upstream': bridges are not supported yet"));
    CHECK(log_contains("test.conf:10: connection: bridge 'second'"));
    config_free(&c);

    CHECK(fails_at("topic a/b\n", 1, "topic"));
    CHECK(fails_at("listener 1883\naddress x\n", 2, "address"));
}

/* Every key named in mosquitto.conf(5) (Mosquitto 2.0) must be accepted. */
TEST(every_mosquitto_key_accepted)
{
    static const char *general[] = {
        "acl_file /x", "allow_anonymous true", "allow_duplicate_messages true",
        "allow_zero_length_clientid true", "auth_opt_x y", "auth_plugin /x.so",
        "auth_plugin_deny_special_chars true", "auto_id_prefix a-", "autosave_interval 10",
        "autosave_on_changes false", "check_retain_source true", "clientid_prefixes p",
        "connection_messages true", "log_dest stderr", "log_facility 1",
        "log_timestamp true", "log_timestamp_format %s", "log_type error",
        "max_inflight_bytes 1", "max_inflight_messages 1", "max_keepalive 60",
        "max_packet_size 100", "max_queued_bytes 1", "max_queued_messages 1",
        "memory_limit 100", "message_size_limit 1", "password_file /x",
        "per_listener_settings false", "persistence false", "persistence_file m.db",
        "persistence_location /tmp/", "persistent_client_expiration 1d", "pid_file /x",
        "psk_file /x", "queue_qos0_messages false", "retain_available true",
        "set_tcp_nodelay false", "sys_interval 10", "upgrade_outgoing_qos false",
        "user mosquitto", "bind_address 127.0.0.1", "bind_interface eth0", "http_dir /x",
        "listener 1883", "max_connections 1", "max_qos 2", "max_topic_alias 1",
        "mount_point m/", "port 1883", "protocol mqtt", "socket_domain ipv4",
        "use_username_as_clientid false", "websockets_log_level 0",
        "websockets_headers_size 1024", "cafile /x", "capath /x", "certfile /x",
        "ciphers a:b", "ciphers_tls1.3 a", "crlfile /x", "dhparamfile /x", "keyfile /x",
        "require_certificate false", "tls_engine e", "tls_engine_kpass_sha1 00",
        "tls_keyform pem", "tls_version tlsv1.2", "use_identity_as_username false",
        "use_subject_as_username false", "psk_hint h", "plugin /x.so", "plugin_opt_a b",
    };
    static const char *bridge[] = {
        "address a:1883", "addresses a b", "bridge_attempt_unsubscribe true",
        "bridge_bind_address 1.2.3.4", "bridge_max_packet_size 0",
        "bridge_outgoing_retain true", "bridge_protocol_version mqttv311",
        "cleansession false", "local_cleansession false", "keepalive_interval 60",
        "idle_timeout 60", "local_clientid l", "local_password p", "local_username u",
        "notifications true", "notifications_local_only false", "notification_topic t",
        "remote_clientid r", "remote_password p", "remote_username u", "restart_timeout 5 30",
        "round_robin false", "start_type automatic", "threshold 10", "topic # both 0",
        "try_private true", "bridge_alpn x", "bridge_cafile /x", "bridge_capath /x",
        "bridge_certfile /x", "bridge_identity i", "bridge_insecure false",
        "bridge_keyfile /x", "bridge_psk 00", "bridge_require_ocsp false",
        "bridge_tls_version tlsv1.2", "clientid c", "username u", "password p",
    };
    struct config c;
    char text[256], err[512];

    log_set_mask(0);
    for (size_t i = 0; i < sizeof general / sizeof general[0]; i++) {
        /* include_dir / would read *.conf in / (normally none). */
        snprintf(text, sizeof text, "%s\n", general[i]);
        int rc = parse(&c, text, err, sizeof err);
        if (rc)
            fprintf(stderr, "rejected: %s: %s\n", general[i], err);
        CHECK_EQ(rc, 0);
        config_free(&c);
    }
    for (size_t i = 0; i < sizeof bridge / sizeof bridge[0]; i++) {
        snprintf(text, sizeof text, "connection b\n%s\n", bridge[i]);
        int rc = parse(&c, text, err, sizeof err);
        if (rc)
            fprintf(stderr, "rejected: %s: %s\n", bridge[i], err);
        CHECK_EQ(rc, 0);
        CHECK_EQ(c.warning_count, 1);
        config_free(&c);
    }
}

/* ---- include_dir ---------------------------------------------------------- */

TEST(include_dir_alphabetical)
{
    static const char *names[] = { "b.conf", "A.conf", "01.conf", "a.conf", "B.conf", "00.conf" };
    static const char *order[] = { "00.conf", "01.conf", "A.conf", "a.conf", "B.conf", "b.conf" };
    char dir[400], path[512], text[600];
    struct config c;

    snprintf(dir, sizeof dir, "%s/conf.d", tmpdir);
    CHECK_EQ(mkdir(dir, 0700), 0);
    for (size_t i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        snprintf(text, sizeof text, "# %s\nlistener %d\n", names[i], 2000 + (int)i);
        write_file(path, text);
    }
    snprintf(path, sizeof path, "%s/ignored.txt", dir);
    write_file(path, "this is not a config file\n");
    snprintf(path, sizeof path, "%s/sub.conf", dir);
    CHECK_EQ(mkdir(path, 0700), 0); /* a directory, even if named .conf, is skipped */

    snprintf(text, sizeof text, "sys_interval 3\ninclude_dir %s/\nlistener 3000\n", dir);
    CHECK_EQ(parse_ok(&c, text), 0);
    CHECK_EQ(c.listener_count, 7);
    if (c.listener_count == 7) {
        for (size_t i = 0; i < 6; i++) {
            size_t src = 0;
            while (strcmp(names[src], order[i]))
                src++;
            CHECK_EQ(c.listeners[i].port, 2000 + (int)src);
            CHECK_EQ(c.listeners[i].line, 2);
            CHECK(strstr(c.listeners[i].file, order[i]) != NULL);
        }
        CHECK_EQ(c.listeners[6].port, 3000);
        CHECK(!strcmp(c.listeners[6].file, "test.conf"));
        CHECK_EQ(c.listeners[6].line, 3);
    }
    config_free(&c);

    /* Errors in an included file name that file; nested include_dir is refused. */
    snprintf(path, sizeof path, "%s/c.conf", dir);
    write_file(path, "\nmax_qos 9\n");
    snprintf(text, sizeof text, "include_dir %s\n", dir);
    char err[512], want[600];
    CHECK_EQ(parse(&c, text, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s/c.conf:2: max_qos: 9 is out of range (0 to 2)", dir);
    CHECK(!strcmp(err, want));
    config_free(&c);
    write_file(path, "include_dir /tmp\n");
    CHECK_EQ(parse(&c, text, err, sizeof err), -1);
    CHECK(strstr(err, "c.conf:1: include_dir: only allowed in the main configuration file") != NULL);
    config_free(&c);
    unlink(path);

    CHECK(fails_at("include_dir /nonexistent/petrel\n", 1, "include_dir"));

    /* Clean up. */
    for (size_t i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/ignored.txt", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/sub.conf", dir);
    rmdir(path);
    CHECK_EQ(rmdir(dir), 0);
}

TEST(config_load_files)
{
    char main_path[400], dir[400], inc[500], text[1000], err[512];
    struct config c;

    snprintf(dir, sizeof dir, "%s/inc.d", tmpdir);
    CHECK_EQ(mkdir(dir, 0700), 0);
    snprintf(main_path, sizeof main_path, "%s/main.conf", tmpdir);
    snprintf(text, sizeof text, "per_listener_settings true\nlistener 1883\n"
             "include_dir %s\nallow_anonymous true\n", dir);
    write_file(main_path, text);
    snprintf(inc, sizeof inc, "%s/10-tls.conf", dir);
    write_file(inc, "listener 8883\npassword_file /etc/pw\n");

    config_init(&c);
    CHECK_EQ(config_load(&c, main_path, err, sizeof err), 0);
    CHECK_EQ(config_finalize(&c, err, sizeof err), 0);
    CHECK(c.path && !strcmp(c.path, main_path));
    CHECK_EQ(c.file_count, 2);
    CHECK_EQ(c.listener_count, 2);
    if (c.listener_count == 2) {
        CHECK_EQ(c.listeners[0].security.allow_anonymous, 0);
        CHECK_EQ(c.listeners[1].security.allow_anonymous, 1); /* block continues inline */
        CHECK(!strcmp(c.listeners[1].security.password_file, "/etc/pw"));
        CHECK(!strcmp(c.listeners[1].file, inc));
    }
    config_free(&c);

    config_init(&c);
    CHECK_EQ(config_load(&c, "/nonexistent/petrel.conf", err, sizeof err), -1);
    CHECK(!strncmp(err, "/nonexistent/petrel.conf: cannot open: ", 39));
    config_free(&c);

    unlink(inc);
    rmdir(dir);
    unlink(main_path);
}

TEST(debian_mosquitto_conf)
{
    const char *path = "/etc/mosquitto/mosquitto.conf";
    struct config c;
    char err[512];

    if (access(path, R_OK) != 0)
        return;
    log_set_mask(0);
    config_init(&c);
    CHECK_EQ(config_load(&c, path, err, sizeof err), 0);
    if (err[0])
        fprintf(stderr, "%s\n", err);
    CHECK_EQ(config_finalize(&c, err, sizeof err), 0);
    CHECK(c.persistence); /* persistence true, persistence_location /var/lib/mosquitto/ */
    CHECK(c.persistence_location != NULL);
    CHECK(c.pid_file != NULL);
    CHECK(c.log_dest & LOG_D_FILE);
    CHECK(c.listener_count >= 1);
    config_free(&c);
}

/* ---- command line ports --------------------------------------------------- */

TEST(cmdline_ports)
{
    struct config c;
    char err[256];

    config_init(&c);
    CHECK_EQ(config_add_cmdline_port(&c, 1884, err, sizeof err), 0);
    CHECK_EQ(config_add_cmdline_port(&c, 1885, err, sizeof err), 0);
    CHECK_EQ(config_add_cmdline_port(&c, 0, err, sizeof err), -1);
    CHECK_EQ(config_add_cmdline_port(&c, 65536, err, sizeof err), -1);
    CHECK_EQ(config_finalize(&c, err, sizeof err), 0);
    CHECK(c.local_only);
    CHECK_EQ(c.listener_count, 2);
    if (c.listener_count == 2) {
        CHECK_EQ(c.listeners[0].port, 1884);
        CHECK(!strcmp(c.listeners[0].address, "127.0.0.1"));
        CHECK_EQ(c.listeners[1].port, 1885);
        CHECK_EQ(c.listeners[1].security.allow_anonymous, 1);
    }
    config_free(&c);

    config_init(&c);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(config_add_cmdline_port(&c, 2000 + i, err, sizeof err), 0);
    CHECK_EQ(config_add_cmdline_port(&c, 3000, err, sizeof err), -1);
    config_free(&c);

    /* Replaces the port of the file's default listener. */
    log_set_mask(0);
    CHECK_EQ(parse(&c, "bind_address 10.1.1.1\nport 1999\n", err, sizeof err), 0);
    CHECK_EQ(config_add_cmdline_port(&c, 1884, err, sizeof err), 0);
    CHECK_EQ(config_add_cmdline_port(&c, 1885, err, sizeof err), 0);
    CHECK_EQ(config_finalize(&c, err, sizeof err), 0);
    CHECK_EQ(c.listener_count, 1);
    CHECK_EQ(c.listeners[0].port, 1884);
    CHECK(!strcmp(c.listeners[0].address, "10.1.1.1"));
    CHECK(!c.local_only);
    config_free(&c);

    /* Ignored when the file configures only listener blocks. */
    CHECK_EQ(parse(&c, "listener 9000\n", err, sizeof err), 0);
    CHECK_EQ(config_add_cmdline_port(&c, 1884, err, sizeof err), 0);
    CHECK_EQ(config_finalize(&c, err, sizeof err), 0);
    CHECK_EQ(c.listener_count, 1);
    CHECK_EQ(c.listeners[0].port, 9000);
    config_free(&c);
}

/* ---- log module ----------------------------------------------------------- */

TEST(log_lines)
{
    char *text, *p;
    char big[3000];

    capture_log();
    log_error("hello %d", 42);
    log_debug("debug %s", "on");
    log_info("multi\nline\rmessage");
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_notice("%s", big);
    text = slurp(logpath);
    CHECK(text != NULL);
    if (text) {
        /* "DIGITS: hello 42\n" */
        p = text;
        CHECK(*p >= '0' && *p <= '9');
        while (*p >= '0' && *p <= '9')
            p++;
        CHECK(!strncmp(p, ": hello 42\n", 11));
        CHECK(strstr(text, ": debug on\n") != NULL);
        CHECK(strstr(text, ": multi?line?message\n") != NULL);
        p = strstr(text, "xxxx");
        CHECK(p && strlen(p) == sizeof big && p[sizeof big - 1] == '\n');
        free(text);
    }

    /* The mask filters. */
    log_set_mask(LOG_ERROR);
    CHECK(log_enabled(LOG_ERROR));
    CHECK(!log_enabled(LOG_WARNING));
    log_warning("should not appear");
    CHECK(!log_contains("should not appear"));
    log_set_mask(0);
    log_error("nor this");
    CHECK(!log_contains("nor this"));
}

TEST(log_configure_options)
{
    struct config lc;
    char *text;

    unlink(logpath);
    config_init(&lc);
    lc.log_dest = LOG_D_FILE;
    lc.log_file = strdup(logpath);
    lc.log_timestamp = false;
    CHECK_EQ(log_configure(&lc), 0);
    CHECK(log_enabled(LOG_INFO));
    CHECK(!log_enabled(LOG_DEBUG));
    log_info("no stamp");
    text = slurp(logpath);
    CHECK(text && !strcmp(text, "no stamp\n"));
    free(text);

    lc.log_timestamp = true;
    lc.log_timestamp_format = strdup("[%Y]");
    CHECK_EQ(log_configure(&lc), 0);
    log_info("stamped");
    text = slurp(logpath);
    CHECK(text && strstr(text, "]: stamped\n") && strstr(text, "\n[2"));
    free(text);

    lc.log_dest = LOG_D_NONE;
    CHECK_EQ(log_configure(&lc), 0);
    CHECK(!log_enabled(LOG_ERROR));
    config_free(&lc);

    config_init(&lc);
    lc.log_dest = LOG_D_FILE;
    lc.log_file = strdup("/nonexistent/dir/petrel.log");
    CHECK_EQ(log_configure(&lc), -1);
    config_free(&lc);

    log_init_default();
    CHECK(log_enabled(LOG_ERROR) && log_enabled(LOG_WARNING) && log_enabled(LOG_NOTICE)
          && log_enabled(LOG_INFO) && !log_enabled(LOG_DEBUG));
    log_close();
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/petrel_test_config.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(logpath, sizeof logpath, "%s/log.txt", tmpdir);

    RUN(defaults_after_init);
    RUN(empty_config_gets_local_listener);
    RUN(comments_blank_lines_whitespace_crlf);
    RUN(port_only_binds_everywhere_and_denies_anonymous);
    RUN(bind_address_default_port);
    RUN(allow_anonymous_explicit_true_with_listeners);
    RUN(several_listeners);
    RUN(listener_keys_before_first_listener_make_default_listener);
    RUN(listener_errors);
    RUN(duplicate_listener_rejected_at_finalize);
    RUN(hand_made_listener_inherits_globals);
    RUN(tls_keys_flag_the_listener);
    RUN(global_security_copied_to_listeners);
    RUN(per_listener_security);
    RUN(per_listener_settings_must_come_first);
    RUN(global_keys_good_values);
    RUN(numeric_limits_and_bad_values);
    RUN(boundary_values_accepted);
    RUN(duration_suffixes);
    RUN(extra_tokens_warn);
    RUN(duplicate_string_keys);
    RUN(log_type_and_log_dest);
    RUN(unsupported_mosquitto_keys_warn);
    RUN(persistence_keys);
    RUN(unknown_keys_fail);
    RUN(bridge_sections_skipped);
    RUN(every_mosquitto_key_accepted);
    RUN(include_dir_alphabetical);
    RUN(config_load_files);
    RUN(debian_mosquitto_conf);
    RUN(cmdline_ports);
    RUN(log_lines);
    RUN(log_configure_options);

    log_close();
    unlink(logpath);
    rmdir(tmpdir);
    return test_report();
}
