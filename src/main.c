/* main.c - the petrel daemon: command line (Mosquitto's flags), config,
 * start the workers, wait for a signal, shut down cleanly. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/message.h"
#include "broker/persist.h"
#include "broker/retain.h"
#include "broker/router.h"
#include "broker/session.h"
#include "conf/config.h"
#include "net/listener.h"
#include "net/worker.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"

struct broker *g_broker;

int broker_worker_for(const struct broker *b, const uint8_t *client_id, size_t len)
{
    return (int)(hash_bytes(client_id, len, b->hash_seed) % (uint32_t)b->worker_count);
}

static void usage(FILE *f)
{
    fprintf(f,
            "petrel %s - an MQTT 3.1, 3.1.1 and 5.0 broker\n\n"
            "Usage: petrel [-c config_file] [-d] [-p port] [-t] [-v]\n\n"
            "  -c, --config-file FILE  read the configuration from FILE (mosquitto.conf syntax)\n"
            "  -d, --daemon            run in the background\n"
            "  -p, --port PORT         listen on PORT (the default listener; repeatable)\n"
            "  -t, --test-config       check the configuration and exit\n"
            "  -v, --verbose           log everything (log_type all)\n"
            "  -h, --help              this text\n"
            "      --version           print the version and exit\n\n"
            "With no configuration file petrel listens on 127.0.0.1:1883 and allows\n"
            "anonymous clients there.\n",
            PETREL_VERSION);
}

/* `user NAME`: when started as root, give up root once the listeners are
 * bound (ports below 1024 need it, nothing afterwards does). */
static int drop_privileges(const char *user)
{
    if (!user || getuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        log_error("user %s: no such user", user);
        return -1;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0) {
        log_error("cannot switch to user %s: %s", user, strerror(errno));
        return -1;
    }
    log_info("running as user %s", user);
    return 0;
}

static int daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0)
        _exit(0);
    if (setsid() < 0)
        return -1;
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config-file", required_argument, NULL, 'c'},
        {"daemon", no_argument, NULL, 'd'},
        {"port", required_argument, NULL, 'p'},
        {"test-config", no_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config_file = NULL;
    bool daemon_mode = false, test_only = false, verbose = false;
    int ports[16], port_count = 0;
    int opt;
    /* Signals are blocked from the very start and taken with sigwait()
     * once the broker runs: a SIGTERM that arrives during start-up waits
     * and then stops the broker cleanly instead of killing it half-made.
     * Threads inherit the mask, so workers never see these signals. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    log_init_default();
    while ((opt = getopt_long(argc, argv, "c:dp:tvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_file = optarg;
            break;
        case 'd':
            daemon_mode = true;
            break;
        case 'p': {
            char *end;
            long p = strtol(optarg, &end, 10);
            if (*end || p < 1 || p > 65535 || port_count == 16) {
                fprintf(stderr, "petrel: invalid port '%s'\n", optarg);
                return 1;
            }
            ports[port_count++] = (int)p;
            break;
        }
        case 't':
            test_only = true;
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("petrel version %s\n", PETREL_VERSION);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "petrel: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 1;
    }

    static struct config conf;
    char err[512];
    config_init(&conf);
    if (config_file && config_load(&conf, config_file, err, sizeof(err)) < 0) {
        fprintf(stderr, "petrel: %s\n", err);
        config_free(&conf);
        return 1;
    }
    for (int i = 0; i < port_count; i++)
        if (config_add_cmdline_port(&conf, ports[i], err, sizeof(err)) < 0) {
            fprintf(stderr, "petrel: %s\n", err);
            config_free(&conf);
            return 1;
        }
    if (daemon_mode)
        conf.daemon = true;
    if (verbose)
        conf.log_type = LOG_T_ALL;
    if (config_finalize(&conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "petrel: %s\n", err);
        config_free(&conf);
        return 1;
    }
    if (test_only) {
        printf("petrel: configuration %s is valid\n", config_file ? config_file : "(defaults)");
        config_free(&conf);
        return 0;
    }
    if (log_configure(&conf) < 0) {
        fprintf(stderr, "petrel: cannot open log file %s\n", conf.log_file ? conf.log_file : "");
        config_free(&conf);
        return 1;
    }

    static struct broker b;
    g_broker = &b;
    b.conf = &conf;
    b.start_mono_ms = clock_mono_ms();
    b.hash_seed = (uint32_t)clock_wall_ms() ^ (uint32_t)getpid();
    b.worker_count = conf.workers > 0 ? conf.workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (b.worker_count < 1)
        b.worker_count = 1;
    int rc = 1;
    bool pid_written = false;

    /* Mosquitto's order: detach, write the pid file (as root, if started
     * so), bind the listeners, then give up root. */
    if (conf.daemon && daemonize() < 0) {
        log_error("cannot daemonize: %s", strerror(errno));
        goto out;
    }
    if (conf.pid_file) {
        FILE *pf = fopen(conf.pid_file, "w");
        if (!pf) {
            log_error("cannot write pid file %s: %s", conf.pid_file, strerror(errno));
            goto out;
        }
        fprintf(pf, "%d\n", (int)getpid());
        fclose(pf);
        pid_written = true;
    }
    b.listener_count = listeners_open(&conf, &b.listeners, err, sizeof(err));
    if (b.listener_count < 0) {
        log_error("%s", err);
        b.listener_count = 0;
        goto out;
    }
    if (b.listener_count == 0) {
        log_error("no listener to serve: every configured listener was skipped");
        goto out;
    }
    if (auth_open(&b) < 0)
        goto out;
    if (drop_privileges(conf.user) < 0)
        goto out;

    static const struct router_ops ops = {
        .ref = session_router_ref,
        .online = session_router_online,
        .inflight = session_router_inflight,
        .busy = session_router_busy,
    };
    b.router = router_new(&ops, conf.shared_subscription_strategy, b.worker_count);
    b.retain = retain_new();
    b.workers = calloc((size_t)b.worker_count, sizeof(*b.workers));
    if (!b.router || !b.retain || !b.workers) {
        log_error("out of memory");
        goto out;
    }


    for (int i = 0; i < b.worker_count; i++) {
        b.workers[i] = worker_new(&b, i);
        if (!b.workers[i])
            goto out;
    }
    if (persist_open(&b) < 0 || persist_load(&b) < 0) {
        rc = 1;
        goto out;
    }
    int started = 0;
    for (; started < b.worker_count; started++)
        if (worker_start(b.workers[started]) < 0)
            break;
    if (started < b.worker_count) {
        log_error("cannot start worker threads");
        atomic_store(&b.stopping, true);
    } else {
        log_notice("petrel version %s running with %d worker%s", PETREL_VERSION, b.worker_count,
                   b.worker_count == 1 ? "" : "s");
        rc = 0;
        for (;;) {
            int sig = 0;
            if (sigwait(&sigs, &sig) != 0)
                continue;
            if (sig == SIGINT || sig == SIGTERM) {
                log_notice("petrel version %s terminating (signal %d)", PETREL_VERSION, sig);
                break;
            }
            if (sig == SIGHUP) {
                auth_reload(&b);
                continue;
            }
            /* SIGUSR1/2 have nothing to do yet. */
            log_info("signal %d ignored", sig);
        }
        atomic_store(&b.stopping, true);
    }
    for (int i = 0; i < started; i++)
        worker_wake(b.workers[i]);
    for (int i = 0; i < started; i++)
        worker_join(b.workers[i]);

out:
    persist_close(&b);
    if (b.workers) {
        /* Free in-transit deliveries before sessions, sessions before the
         * indexes they are in. */
        for (int i = 0; i < b.worker_count; i++)
            if (b.workers[i])
                session_table_destroy(b.workers[i]);
        for (int i = 0; i < b.worker_count; i++)
            worker_free(b.workers[i]);
        free(b.workers);
    }
    if (b.router)
        router_free(b.router);
    if (b.retain)
        retain_free(b.retain);
    auth_close(&b);
    listeners_close(b.listeners, b.listener_count);
    if (pid_written)
        unlink(conf.pid_file);
    log_close();
    config_free(&conf);
    return rc;
}
