/* file.c - see file.h. */
#include "util/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int file_read_all(const char *path, size_t max, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char *text = NULL;
    size_t n = 0, cap = 0;
    int err = 0;
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 4096;
            char *t = nc <= max ? realloc(text, nc) : NULL;
            if (!t) {
                err = nc > max ? EFBIG : ENOMEM;
                break;
            }
            text = t;
            cap = nc;
        }
        size_t got = fread(text + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (!err && ferror(f))
        err = EIO;
    fclose(f);
    if (err) {
        free(text);
        errno = err;
        return -1;
    }
    *out = text;
    *len = n;
    return 0;
}
