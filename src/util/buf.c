/* buf.c - growable byte buffer (see buf.h). */
#include "util/buf.h"

#include <stdlib.h>
#include <string.h>

uint8_t *buf_reserve(struct buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return b->data + b->len;
    /* Compact first: consumed bytes at the front are free space. */
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= n)
            return b->data + b->len;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2)
            return NULL;
        cap *= 2;
    }
    uint8_t *d = realloc(b->data, cap);
    if (!d)
        return NULL;
    b->data = d;
    b->cap = cap;
    return b->data + b->len;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    uint8_t *w = buf_reserve(b, n);
    if (!w)
        return -1;
    memcpy(w, p, n);
    b->len += n;
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len) {
        b->off = b->len = 0;
        /* A small buffer is cheap to get again and would otherwise sit
         * in every idle connection; a grown one stays for the next burst. */
        if (b->cap <= BUF_KEEP_MIN)
            buf_free(b);
    }
}

void buf_trim(struct buf *b)
{
    if (b->len == 0 && b->data)
        buf_free(b);
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}
