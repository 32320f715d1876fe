/* file.h - reading a whole file into memory. */
#ifndef PETREL_UTIL_FILE_H
#define PETREL_UTIL_FILE_H

#include <stddef.h>

/* Read path into a malloc'd buffer (*out, *len; not NUL-terminated).
 * Returns 0, or -1 with errno set (EFBIG when larger than max). */
int file_read_all(const char *path, size_t max, char **out, size_t *len);

#endif
