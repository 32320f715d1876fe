/* topic.c - topic name and filter rules, matching, shared subscriptions. */
#include "mqtt/topic.h"

#include <string.h>

#include "mqtt/codec.h"

bool topic_name_valid(const uint8_t *s, size_t len)
{
    if (len == 0 || len > 65535)
        return false;
    if (memchr(s, '+', len) || memchr(s, '#', len))
        return false;
    return mqtt_utf8_valid(s, len);
}

/* A plain filter: '+' a whole level, '#' the whole last level. */
static bool plain_filter_valid(const uint8_t *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            if ((i > 0 && s[i - 1] != '/') || (i + 1 < len && s[i + 1] != '/'))
                return false;
        } else if (s[i] == '#') {
            if ((i > 0 && s[i - 1] != '/') || i + 1 != len)
                return false;
        }
    }
    return true;
}

bool topic_shared_split(const uint8_t *f, size_t flen, const uint8_t **group,
                        size_t *glen, const uint8_t **filter, size_t *filter_len)
{
    if (flen > 7 && memcmp(f, "$share/", 7) == 0) {
        const uint8_t *g = f + 7;
        const uint8_t *slash = memchr(g, '/', flen - 7);
        if (!slash)
            return false;
        *group = g;
        *glen = (size_t)(slash - g);
        *filter = slash + 1;
        *filter_len = flen - 7 - *glen - 1;
        return true;
    }
    if (flen > 7 && memcmp(f, "$queue/", 7) == 0) {
        *group = f;
        *glen = 6; /* "$queue" */
        *filter = f + 7;
        *filter_len = flen - 7;
        return true;
    }
    return false;
}

bool topic_filter_valid(const uint8_t *s, size_t len)
{
    if (len == 0 || len > 65535 || !mqtt_utf8_valid(s, len))
        return false;
    if (len >= 7 && (memcmp(s, "$share/", 7) == 0 || memcmp(s, "$queue/", 7) == 0)) {
        const uint8_t *g, *f;
        size_t glen, flen;
        if (!topic_shared_split(s, len, &g, &glen, &f, &flen))
            return false; /* "$share/group" without a filter */
        if (glen == 0 || memchr(g, '+', glen) || memchr(g, '#', glen))
            return false;
        return plain_filter_valid(f, flen);
    }
    if (len == 6 && memcmp(s, "$share", 6) == 0)
        return true; /* a plain filter that happens to be named $share */
    return plain_filter_valid(s, len);
}

bool topic_has_wildcard(const uint8_t *f, size_t flen)
{
    return memchr(f, '+', flen) || memchr(f, '#', flen);
}

bool topic_matches(const uint8_t *f, size_t flen, const uint8_t *t, size_t tlen)
{
    /* Section 4.7.2: a leading wildcard does not match a '$' topic. */
    if (tlen > 0 && t[0] == '$' && flen > 0 && (f[0] == '+' || f[0] == '#'))
        return false;
    size_t fi = 0, ti = 0;
    for (;;) {
        if (fi == flen)
            return ti == tlen;
        if (f[fi] == '#')
            return true; /* matches the parent level and everything below */
        if (f[fi] == '+') {
            while (ti < tlen && t[ti] != '/')
                ti++;
            fi++;
        } else {
            while (fi < flen && ti < tlen && f[fi] != '/' && t[ti] != '/') {
                if (f[fi] != t[ti])
                    return false;
                fi++;
                ti++;
            }
            if ((fi < flen && f[fi] != '/') || (ti < tlen && t[ti] != '/'))
                return false;
        }
        /* Both at a level end. */
        if (fi == flen)
            return ti == tlen;
        if (ti == tlen) {
            /* "a/#" matches "a": the filter continues with "/#". */
            return flen - fi == 2 && f[fi] == '/' && f[fi + 1] == '#';
        }
        fi++; /* skip '/' */
        ti++;
    }
}
