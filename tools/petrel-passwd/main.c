/* petrel-passwd - manage password files (auth/passwd.h), with the command
 * line of mosquitto_passwd:
 *
 *   petrel-passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c | -D] FILE USER
 *   petrel-passwd [-H ...] [-I iterations] [-c] -b FILE USER PASSWORD
 *   petrel-passwd -U FILE
 *
 * Without -b the password is read from the terminal, twice. The file is
 * rewritten through a temporary file and a rename, so a reader never sees
 * it half written; other lines (comments, other users) are kept.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "auth/passwd.h"

#define LINE_MAX_LEN 65536

static void usage(void)
{
    fprintf(stderr,
            "petrel-passwd manages password files for petrel (mosquitto_passwd's format).\n\n"
            "usage: petrel-passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c | -D] "
            "passwordfile username\n"
            "       petrel-passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c] -b "
            "passwordfile username password\n"
            "       petrel-passwd -U passwordfile\n"
            " -b : take the password from the command line.\n"
            " -c : create a new password file, replacing any ('-' writes to stdout).\n"
            " -D : delete the user instead of setting a password.\n"
            " -H : the hash: sha512-pbkdf2 (default) or sha512 (for Mosquitto 1.6 and earlier).\n"
            " -I : PBKDF2 iterations (default %d).\n"
            " -U : hash the plain-text passwords of a file in place.\n",
            PASSWD_DEFAULT_ITERATIONS);
}

static int read_tty_password(const char *prompt, char *out, size_t cap)
{
    FILE *tty = fopen("/dev/tty", "r+");
    FILE *in = tty ? tty : stdin;
    FILE *echo = tty ? tty : stderr;
    struct termios old, quiet;
    bool restore = tcgetattr(fileno(in), &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= (tcflag_t)~ECHO;
        tcsetattr(fileno(in), TCSAFLUSH, &quiet);
    }
    fputs(prompt, echo);
    fflush(echo);
    char *got = fgets(out, (int)cap, in);
    if (restore)
        tcsetattr(fileno(in), TCSAFLUSH, &old);
    fputs("\n", echo);
    if (tty)
        fclose(tty);
    if (!got)
        return -1;
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

struct lines {
    char **v;
    size_t n, cap;
};

static int push(struct lines *l, char *s)
{
    if (!s)
        return -1;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        char **a = realloc(l->v, nc * sizeof(*a));
        if (!a) {
            free(s);
            return -1;
        }
        l->v = a;
        l->cap = nc;
    }
    l->v[l->n++] = s;
    return 0;
}

static int read_lines(const char *path, struct lines *l)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "petrel-passwd: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(LINE_MAX_LEN);
    int rc = buf ? 0 : -1;
    while (rc == 0 && fgets(buf, LINE_MAX_LEN, f)) {
        buf[strcspn(buf, "\r\n")] = '\0';
        rc = push(l, strdup(buf));
    }
    free(buf);
    fclose(f);
    if (rc < 0)
        fprintf(stderr, "petrel-passwd: out of memory reading %s\n", path);
    return rc;
}

static int write_lines(const char *path, const struct lines *l)
{
    if (strcmp(path, "-") == 0) {
        for (size_t i = 0; i < l->n; i++)
            printf("%s\n", l->v[i]);
        return fflush(stdout) == 0 ? 0 : -1;
    }
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp)
        return -1;
    snprintf(tmp, n, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    struct stat st;
    mode_t mode = stat(path, &st) == 0 ? (st.st_mode & 07777) : 0600;
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    int rc = f ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        if (fprintf(f, "%s\n", l->v[i]) < 0)
            rc = -1;
    if (f) {
        if (fflush(f) != 0 || fchmod(fd, mode) != 0 || fsync(fd) != 0)
            rc = -1;
        if (fclose(f) != 0)
            rc = -1;
    } else if (fd >= 0) {
        close(fd);
    }
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -1;
    if (rc < 0) {
        fprintf(stderr, "petrel-passwd: cannot write %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            unlink(tmp);
    }
    free(tmp);
    return rc;
}

static bool is_user_line(const char *line, const char *user)
{
    size_t n = strlen(user);
    return strncmp(line, user, n) == 0 && line[n] == ':';
}

static char *make_line(const char *user, enum passwd_kind kind, int iterations,
                       const char *password)
{
    char hash[256];
    if (passwd_hash(kind, iterations, password, hash, sizeof(hash)) < 0)
        return NULL;
    size_t n = strlen(user) + strlen(hash) + 2;
    char *line = malloc(n);
    if (line)
        snprintf(line, n, "%s:%s", user, hash);
    return line;
}

static bool hashed(const char *h)
{
    return (h[0] == '$' && (h[1] == '6' || h[1] == '7') && h[2] == '$');
}

int main(int argc, char **argv)
{
    bool batch = false, create = false, del = false, update = false;
    enum passwd_kind kind = PASSWD_PBKDF2;
    int iterations = PASSWD_DEFAULT_ITERATIONS;
    int opt;
    while ((opt = getopt(argc, argv, "bcDH:I:Uh")) != -1) {
        switch (opt) {
        case 'b': batch = true; break;
        case 'c': create = true; break;
        case 'D': del = true; break;
        case 'U': update = true; break;
        case 'H':
            if (strcmp(optarg, "sha512") == 0) {
                kind = PASSWD_SHA512;
            } else if (strcmp(optarg, "sha512-pbkdf2") == 0) {
                kind = PASSWD_PBKDF2;
            } else {
                fprintf(stderr, "petrel-passwd: unknown hash %s\n", optarg);
                return 1;
            }
            break;
        case 'I': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 10000000) {
                fprintf(stderr, "petrel-passwd: -I wants 1 to 10000000 iterations\n");
                return 1;
            }
            iterations = (int)v;
            break;
        }
        default:
            usage();
            return opt == 'h' ? 0 : 1;
        }
    }
    int rest = argc - optind;
    if ((create && del) || (update && (create || del || batch)) ||
        (update ? rest != 1 : batch ? (del ? rest != 2 : rest != 3) : rest != 2)) {
        usage();
        return 1;
    }
    const char *path = argv[optind];
    struct lines l = {0};
    int rc = 0;
    if (update) {
        if (read_lines(path, &l) < 0)
            return 1;
        for (size_t i = 0; i < l.n && rc == 0; i++) {
            char *colon = strchr(l.v[i], ':');
            if (!colon || l.v[i][0] == '#' || colon == l.v[i] || hashed(colon + 1))
                continue;
            *colon = '\0';
            char *line = make_line(l.v[i], kind, iterations, colon + 1);
            if (!line) {
                rc = -1;
                break;
            }
            free(l.v[i]);
            l.v[i] = line;
        }
        rc = rc == 0 ? write_lines(path, &l) : -1;
    } else {
        const char *user = argv[optind + 1];
        if (!*user || strchr(user, ':') || strpbrk(user, "\r\n")) {
            fprintf(stderr, "petrel-passwd: a username must not be empty or contain ':'\n");
            return 1;
        }
        if (!create && read_lines(path, &l) < 0)
            return 1;
        if (del) {
            size_t out = 0;
            bool found = false;
            for (size_t i = 0; i < l.n; i++) {
                if (is_user_line(l.v[i], user)) {
                    free(l.v[i]);
                    found = true;
                } else {
                    l.v[out++] = l.v[i];
                }
            }
            l.n = out;
            if (!found) {
                fprintf(stderr, "petrel-passwd: user %s not found\n", user);
                rc = -1;
            } else {
                rc = write_lines(path, &l);
            }
        } else {
            char pw[1024], again[1024];
            if (batch) {
                snprintf(pw, sizeof(pw), "%s", argv[optind + 2]);
            } else if (read_tty_password("Password: ", pw, sizeof(pw)) < 0 ||
                       read_tty_password("Reenter password: ", again, sizeof(again)) < 0) {
                fprintf(stderr, "petrel-passwd: no password read\n");
                return 1;
            } else if (strcmp(pw, again) != 0) {
                fprintf(stderr, "petrel-passwd: the passwords do not match\n");
                return 1;
            }
            char *line = make_line(user, kind, iterations, pw);
            memset(pw, 0, sizeof(pw));
            memset(again, 0, sizeof(again));
            bool replaced = false;
            for (size_t i = 0; line && i < l.n; i++) {
                if (is_user_line(l.v[i], user)) {
                    free(l.v[i]);
                    l.v[i] = replaced ? NULL : line;
                    replaced = true;
                }
            }
            size_t out = 0;
            for (size_t i = 0; i < l.n; i++)
                if (l.v[i])
                    l.v[out++] = l.v[i];
            l.n = out;
            rc = !line ? -1 : replaced ? 0 : push(&l, line);
            rc = rc == 0 ? write_lines(path, &l) : -1;
        }
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i]);
    free(l.v);
    return rc == 0 ? 0 : 1;
}
