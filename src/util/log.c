/* log.c - the broker's log, in Mosquitto's style.
 *
 * Each message becomes one line "TIMESTAMP: message\n" written with a single
 * write() per destination, under a mutex, so lines from different threads
 * never interleave. The level mask is an atomic read without locking, so
 * log_enabled() is cheap on hot paths. Destinations: stderr, stdout, an
 * appended file, syslog(3).
 */

/* <syslog.h> defines LOG_WARNING, LOG_NOTICE, LOG_INFO and LOG_DEBUG as
 * macros, which would clash with the enum in log.h: take what we need from it
 * first, then drop those names. */
#include <syslog.h>

static const int sys_prio_err = LOG_ERR;
static const int sys_prio_warning = LOG_WARNING;
static const int sys_prio_notice = LOG_NOTICE;
static const int sys_prio_info = LOG_INFO;
static const int sys_prio_debug = LOG_DEBUG;
static const int sys_facility_daemon = LOG_DAEMON;
static const int sys_facility_local0 = LOG_LOCAL0;
static const int sys_facility_step = LOG_LOCAL1 - LOG_LOCAL0;
static const int sys_open_flags = LOG_PID | LOG_NDELAY;

#undef LOG_WARNING
#undef LOG_NOTICE
#undef LOG_INFO
#undef LOG_DEBUG

#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/config.h"

#define LOG_DEFAULT_MASK (LOG_ERROR | LOG_WARNING | LOG_NOTICE | LOG_INFO)
#define LOG_LINE_STACK 1024

static _Atomic uint32_t log_mask = LOG_DEFAULT_MASK;

/* Everything below is protected by log_lock. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t log_dests = LOG_D_STDERR;
static int log_fd = -1;
static bool log_timestamp = true;
static char *log_ts_format;
static bool log_syslog_open;

void log_set_mask(uint32_t mask)
{
    atomic_store_explicit(&log_mask, mask, memory_order_relaxed);
}

int log_enabled(enum log_level level)
{
    return (atomic_load_explicit(&log_mask, memory_order_relaxed) & (uint32_t)level) != 0;
}

static void log_reset_locked(void)
{
    if (log_fd >= 0)
        close(log_fd);
    log_fd = -1;
    if (log_syslog_open)
        closelog();
    log_syslog_open = false;
    free(log_ts_format);
    log_ts_format = NULL;
    log_dests = LOG_D_STDERR;
    log_timestamp = true;
}

void log_init_default(void)
{
    pthread_mutex_lock(&log_lock);
    log_reset_locked();
    pthread_mutex_unlock(&log_lock);
    log_set_mask(LOG_DEFAULT_MASK);
}

int log_configure(const struct config *c)
{
    uint32_t dests = (c->log_dest & LOG_D_NONE) ? 0 : c->log_dest;
    char *format = NULL;
    int fd = -1;

    if ((dests & LOG_D_FILE) && c->log_file) {
        fd = open(c->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0)
            return -1;
    } else {
        dests &= ~(uint32_t)LOG_D_FILE;
    }
    if (c->log_timestamp_format)
        format = strdup(c->log_timestamp_format); /* NULL: epoch seconds */

    pthread_mutex_lock(&log_lock);
    log_reset_locked();
    log_fd = fd;
    log_dests = dests;
    log_timestamp = c->log_timestamp;
    log_ts_format = format;
    if (dests & LOG_D_SYSLOG) {
        int facility = c->log_facility >= 0 && c->log_facility <= 7
            ? sys_facility_local0 + c->log_facility * sys_facility_step
            : sys_facility_daemon;
        openlog("petrel", sys_open_flags, facility);
        log_syslog_open = true;
    }
    pthread_mutex_unlock(&log_lock);
    log_set_mask(dests ? c->log_type : 0);
    return 0;
}

void log_close(void)
{
    pthread_mutex_lock(&log_lock);
    log_reset_locked();
    pthread_mutex_unlock(&log_lock);
}

static int syslog_priority(enum log_level level)
{
    switch (level) {
    case LOG_ERROR: return sys_prio_err;
    case LOG_WARNING: return sys_prio_warning;
    case LOG_NOTICE: return sys_prio_notice;
    case LOG_INFO: return sys_prio_info;
    default: return sys_prio_debug;
    }
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Writes the timestamp prefix ("1700000000: ") into buf; returns its length. */
static size_t format_timestamp(char *buf, size_t size)
{
    time_t now = time(NULL);
    size_t n = 0;

    if (!log_timestamp)
        return 0;
    if (log_ts_format) {
        struct tm tm;

        if (localtime_r(&now, &tm))
            n = strftime(buf, size - 2, log_ts_format, &tm);
    }
    if (n == 0) {
        int r = snprintf(buf, size - 2, "%lld", (long long)now);

        n = r > 0 ? (size_t)r : 0;
    }
    buf[n++] = ':';
    buf[n++] = ' ';
    return n;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    char stack[LOG_LINE_STACK], ts[128], *line = stack, *msg;
    size_t tslen, msglen, i;
    va_list ap;
    int n;

    if (!log_enabled(level))
        return;

    pthread_mutex_lock(&log_lock);
    tslen = format_timestamp(ts, sizeof ts);

    va_start(ap, fmt);
    n = vsnprintf(stack + tslen, sizeof stack - tslen - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        goto out;
    if ((size_t)n >= sizeof stack - tslen - 1) {
        line = malloc(tslen + (size_t)n + 2);
        if (line) {
            va_start(ap, fmt);
            vsnprintf(line + tslen, (size_t)n + 1, fmt, ap);
            va_end(ap);
        } else {
            line = stack; /* out of memory: log the truncated message */
            n = (int)(sizeof stack - tslen - 2);
        }
    }
    memcpy(line, ts, tslen);
    msg = line + tslen;
    msglen = (size_t)n;
    /* One message, one line: control characters (newlines from client data,
     * for instance) become '?'. */
    for (i = 0; i < msglen; i++)
        if ((unsigned char)msg[i] < 0x20 && msg[i] != '\t')
            msg[i] = '?';
    msg[msglen] = '\n';

    if (log_dests & LOG_D_STDERR)
        write_all(STDERR_FILENO, line, tslen + msglen + 1);
    if (log_dests & LOG_D_STDOUT)
        write_all(STDOUT_FILENO, line, tslen + msglen + 1);
    if ((log_dests & LOG_D_FILE) && log_fd >= 0)
        write_all(log_fd, line, tslen + msglen + 1);
    if (log_dests & LOG_D_SYSLOG) {
        msg[msglen] = '\0';
        syslog(syslog_priority(level), "%s", msg);
    }
out:
    pthread_mutex_unlock(&log_lock);
    if (line != stack)
        free(line);
}
