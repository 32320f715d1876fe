/* config.h - the broker's configuration, in Mosquitto's file syntax.
 *
 * config_load() reads a mosquitto.conf-style file (a superset of it): one
 * "key value..." per line, '#' comments, `listener` starting a listener block,
 * `include_dir` pulling in *.conf files in alphabetical order. An invalid
 * value or unknown key is an error naming file, line and key; a Mosquitto key
 * that Petrel does not implement yet is a warning naming it.
 *
 * The structure owns all its strings; config_free() releases them.
 */
#ifndef PETREL_CONF_CONFIG_H
#define PETREL_CONF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum listener_protocol { LISTENER_MQTT = 0, LISTENER_WEBSOCKETS = 1 };

/* Settings that belong to a listener when per_listener_settings is true,
 * and to the whole broker otherwise (then every listener gets a copy). */
struct security_conf {
    int allow_anonymous;      /* -1 = not set (default decided at finalize) */
    char *password_file;
    char *acl_file;
    bool allow_zero_length_clientid; /* default true */
    char *auto_id_prefix;            /* default "auto-" */
};

struct listener_conf {
    int port;                 /* 0 with unix_path set: a unix socket */
    char *address;            /* bind address or host; NULL = all interfaces */
    char *unix_path;          /* unix socket path, or NULL */
    int socket_domain;        /* 0 = any, AF_INET or AF_INET6 (`socket_domain`) */
    enum listener_protocol protocol;
    int max_connections;      /* -1 = unlimited */
    char *mount_point;        /* prefix added to topics of this listener's clients */
    struct security_conf security; /* used when per_listener_settings */
    const char *file;         /* where the block started, for messages */
    int line;
    /* Added for the parser: */
    int max_qos;              /* after finalize: this listener's max QoS */
    int max_topic_alias;      /* after finalize: this listener's topic alias limit */
    bool max_qos_set;         /* false: finalize copies config.max_qos */
    bool max_topic_alias_set; /* false: finalize copies config.max_topic_alias */
    bool tls_configured;      /* a TLS key (certfile, ...) was given for this
                               * listener; TLS is not implemented, so the caller
                               * may refuse to start rather than serve plain TCP */
};

enum log_type_bits {
    LOG_T_ERROR = 1 << 0, LOG_T_WARNING = 1 << 1, LOG_T_NOTICE = 1 << 2,
    LOG_T_INFO = 1 << 3, LOG_T_DEBUG = 1 << 4, LOG_T_SUBSCRIBE = 1 << 5,
    LOG_T_UNSUBSCRIBE = 1 << 6,
    LOG_T_ALL = 0x7f,
};

enum log_dest_bits {
    LOG_D_STDERR = 1 << 0, LOG_D_STDOUT = 1 << 1, LOG_D_FILE = 1 << 2,
    LOG_D_SYSLOG = 1 << 3, LOG_D_NONE = 1 << 4,
};

enum shared_strategy {
    SHARED_ROUND_ROBIN = 0, SHARED_RANDOM, SHARED_LEAST_INFLIGHT, SHARED_STICKY,
};

enum durability {
    DURABILITY_NONE,     /* state in memory only */
    DURABILITY_PERIODIC, /* committed every durability_interval ms */
    DURABILITY_SYNC,     /* committed and fsynced before acknowledging */
};

struct config {
    struct listener_conf *listeners;
    size_t listener_count;
    bool per_listener_settings;
    struct security_conf security; /* global, when !per_listener_settings */

    int workers;                  /* 0 = one per core */
    int max_connections;          /* -1 = unlimited (global) */
    uint32_t max_packet_size;     /* 0 = protocol maximum */
    uint32_t message_size_limit;  /* payload bytes; 0 = none */
    uint16_t max_inflight_messages; /* outbound, per client; 0 = 65535; default 20 */
    uint64_t max_inflight_bytes;  /* 0 = unlimited */
    uint32_t max_queued_messages; /* 0 = unlimited; default 1000 */
    uint64_t max_queued_bytes;    /* 0 = unlimited */
    bool queue_qos0_messages;
    uint16_t max_keepalive;       /* default 65535 */
    uint16_t max_topic_alias;     /* inbound aliases a client may use; default 10 */
    bool retain_available;        /* default true */
    uint8_t max_qos;              /* default 2 */
    bool upgrade_outgoing_qos;
    int64_t persistent_client_expiration; /* seconds; -1 = never */
    int sys_interval;             /* seconds; 0 = no $SYS; default 10 */
    bool set_tcp_nodelay;
    bool connection_messages;     /* default true */
    uint32_t log_type;            /* enum log_type_bits; default error|warning|notice|info */
    uint32_t log_dest;            /* enum log_dest_bits; default stderr */
    char *log_file;               /* for `log_dest file PATH` */
    bool log_timestamp;           /* default true */
    enum shared_strategy shared_subscription_strategy;
    char *pid_file;
    bool daemon;

    /* Durable store (docs/storage.md). */
    bool persistence;
    char *persistence_location;   /* directory; default the working directory */
    char *persistence_file;       /* store directory name in it; default petrel.db */
    enum durability durability;   /* default sync */
    uint32_t durability_interval; /* ms between periodic commits; default 1000 */
    uint64_t store_cache_size;    /* bytes the engine may cache; default 64 MiB */
    uint64_t store_min_free;      /* free bytes kept on the store's filesystem;
                                     0 = twice store_cache_size */
    uint64_t store_queue_memory;  /* queued messages of persistent sessions kept
                                     in memory, bytes; beyond, on disk only;
                                     0 = no limit. Default 64 MiB */

    /* Where the config came from, for messages. Owned. */
    char *path;

    /* Added for the parser: */
    char *user;                   /* `user`; NULL = not set */
    char *log_timestamp_format;   /* strftime format; NULL = seconds since epoch */
    int log_facility;             /* `log_facility` 0..7 = local0..7; -1 = daemon */
    bool local_only;              /* set by finalize: no listener configured, so
                                   * only 127.0.0.1 listeners were added */
    unsigned warning_count;       /* warnings logged while parsing */
    char **files;                 /* every file read, in order; listener_conf.file
                                   * points into this list. Owned. */
    size_t file_count;
    /* Parser state, consumed by config_finalize(): the default listener made
     * by `port`, `bind_address` and listener keys before the first `listener`,
     * and the ports given with -p. */
    struct listener_conf default_listener;
    bool default_listener_used;
    int cmdline_ports[10];
    size_t cmdline_port_count;
};

/* Defaults as documented in docs/configuration.md; no listeners. */
void config_init(struct config *c);
void config_free(struct config *c);

/* Parse a file. On error returns -1 and writes "FILE:LINE: key: message" into
 * err. Warnings (unsupported Mosquitto keys) go to the log. */
int config_load(struct config *c, const char *path, char *err, size_t errlen);

/* Parse text as if it were a file named `name` (tests, fuzzing). include_dir
 * is honoured relative to the filesystem. */
int config_parse_string(struct config *c, const char *text, size_t len,
                        const char *name, char *err, size_t errlen);

/* After parsing and command-line overrides: add the default listener
 * (127.0.0.1:1883, anonymous allowed) when none is configured, resolve
 * defaults that depend on other keys (allow_anonymous), copy the global
 * security settings into listeners when !per_listener_settings. Returns -1
 * with err on an inconsistency. */
int config_finalize(struct config *c, char *err, size_t errlen);

/* Command line -p PORT (up to 10 times), before config_finalize().
 * - No listener configured: one 127.0.0.1 listener per port (local-only
 *   mode, anonymous allowed by default), as Mosquitto 2.
 * - The file made a default listener (`port`, `bind_address`, ...): the
 *   first -p replaces its port; further ones are ignored with a warning.
 * - Only `listener` blocks: -p is ignored with a warning, as Mosquitto 2.
 * Returns -1 with err on a bad port or more than 10. Use this rather than
 * adding listeners by hand: finalize resolves their security settings. */
int config_add_cmdline_port(struct config *c, int port, char *err, size_t errlen);

#endif
