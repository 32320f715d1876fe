/* log.h - the broker's log: levels as Mosquitto's log_type, destinations
 * as its log_dest. Thread-safe; each call writes one whole line. */
#ifndef PETREL_UTIL_LOG_H
#define PETREL_UTIL_LOG_H

#include <stdint.h>

struct config;

enum log_level {
    LOG_ERROR = 1 << 0, LOG_WARNING = 1 << 1, LOG_NOTICE = 1 << 2,
    LOG_INFO = 1 << 3, LOG_DEBUG = 1 << 4, LOG_SUBSCRIBE = 1 << 5,
    LOG_UNSUBSCRIBE = 1 << 6,
};

/* Before configuration is read: everything but debug to stderr. */
void log_init_default(void);
/* Apply log_type / log_dest / log_file / log_timestamp. Returns -1 if the
 * log file cannot be opened. */
int log_configure(const struct config *c);
void log_set_mask(uint32_t mask);
void log_close(void);
int log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
