/* buf.h - a growable byte buffer with a read offset, used for a
 * connection's pending input and output. An emptied buffer that grew past
 * BUF_KEEP_MIN keeps its memory for the next burst, which spares a busy
 * connection the realloc ladder on every write; buf_trim() gives it back
 * (the worker trims buffers unused for a tick), so that an idle connection
 * costs nothing here. */
#ifndef PETREL_UTIL_BUF_H
#define PETREL_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

#define BUF_KEEP_MIN 4096

struct buf {
    uint8_t *data;
    size_t off;  /* first unconsumed byte */
    size_t len;  /* end of valid bytes */
    size_t cap;
};

static inline size_t buf_used(const struct buf *b) { return b->len - b->off; }

/* Make room for n more bytes at the end; returns the write pointer or NULL
 * when out of memory. Commit them with buf_commit(). */
uint8_t *buf_reserve(struct buf *b, size_t n);
static inline void buf_commit(struct buf *b, size_t n) { b->len += n; }
int buf_append(struct buf *b, const void *p, size_t n);
/* Drop n bytes from the front. */
void buf_consume(struct buf *b, size_t n);
/* Free the memory of an empty buffer. */
void buf_trim(struct buf *b);
void buf_free(struct buf *b);

#endif
