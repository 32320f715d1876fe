/* acl.c - see acl.h. */
#include "auth/acl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/topic.h"
#include "util/file.h"

enum owner { OWN_ANON, OWN_USER, OWN_PATTERN };

struct entry {
    enum owner owner;
    int access;
    char *user;   /* OWN_USER */
    char *topic;
    size_t ulen, tlen;
};

struct acl {
    struct entry *e;
    size_t n, cap;
};

struct rule {
    int access;
    size_t len;
    char *topic;
};

struct acl_rules {
    struct rule *r;
    size_t n;
};

static bool space(char c)
{
    return c == ' ' || c == '\t';
}

/* The next word of [*p, end): its start and length; *p moves past it and
 * the blanks after it. */
static const char *word(const char **p, const char *end, size_t *len)
{
    const char *s = *p;
    const char *q = s;
    while (q < end && !space(*q))
        q++;
    *len = (size_t)(q - s);
    while (q < end && space(*q))
        q++;
    *p = q;
    return s;
}

static bool is(const char *w, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(w, lit, n) == 0;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

void acl_free(struct acl *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->e[i].user);
        free(a->e[i].topic);
    }
    free(a->e);
    free(a);
}

size_t acl_rule_count(const struct acl *a)
{
    return a ? a->n : 0;
}

struct acl *acl_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct acl *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    const char *user = NULL;
    size_t ulen = 0;
    int lineno = 0;
    for (size_t pos = 0; pos < len;) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        lineno++;
        const char *p = line, *end = line + ll;
        while (p < end && space(*p))
            p++;
        while (end > p && (space(end[-1]) || end[-1] == '\r'))
            end--;
        if (p == end || *p == '#')
            continue;
        if (memchr(p, '\0', (size_t)(end - p))) {
            snprintf(err, errlen, "line %d: NUL byte", lineno);
            goto fail;
        }
        size_t kl;
        const char *kw = word(&p, end, &kl);
        if (is(kw, kl, "user")) {
            if (p == end) {
                snprintf(err, errlen, "line %d: user without a name", lineno);
                goto fail;
            }
            user = p;
            ulen = (size_t)(end - p);
            continue;
        }
        bool pattern = is(kw, kl, "pattern");
        if (!pattern && !is(kw, kl, "topic")) {
            snprintf(err, errlen, "line %d: unknown keyword '%.*s' (topic, pattern or user)",
                     lineno, (int)(kl > 40 ? 40 : kl), kw);
            goto fail;
        }
        int access = ACL_READ | ACL_WRITE;
        const char *save = p;
        size_t al;
        const char *aw = word(&p, end, &al);
        if (is(aw, al, "read"))
            access = ACL_READ;
        else if (is(aw, al, "write"))
            access = ACL_WRITE;
        else if (is(aw, al, "readwrite"))
            access = ACL_READ | ACL_WRITE;
        else if (is(aw, al, "deny"))
            access = ACL_DENY;
        else
            p = save; /* no access word: the rest is the topic */
        size_t tl = (size_t)(end - p);
        if (tl == 0 || tl > 65535 || !topic_filter_valid((const uint8_t *)p, tl)) {
            snprintf(err, errlen, "line %d: invalid topic '%.*s'", lineno,
                     (int)(tl > 60 ? 60 : tl), p);
            goto fail;
        }
        if (a->n == a->cap) {
            size_t nc = a->cap ? a->cap * 2 : 16;
            struct entry *e = realloc(a->e, nc * sizeof(*e));
            if (!e)
                goto oom;
            a->e = e;
            a->cap = nc;
        }
        struct entry e = {.owner = pattern ? OWN_PATTERN : user ? OWN_USER : OWN_ANON,
                          .access = access, .tlen = tl};
        if (!(e.topic = dup_n(p, tl)))
            goto oom;
        if (e.owner == OWN_USER) {
            e.ulen = ulen;
            if (!(e.user = dup_n(user, ulen))) {
                free(e.topic);
                goto oom;
            }
        }
        a->e[a->n++] = e;
    }
    return a;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    acl_free(a);
    return NULL;
}

struct acl *acl_load(const char *path, char *err, size_t errlen)
{
    char *text;
    size_t len;
    if (file_read_all(path, 64u << 20, &text, &len) < 0) {
        snprintf(err, errlen, "cannot read the ACL file %s: %s", path, strerror(errno));
        return NULL;
    }
    char why[400];
    struct acl *a = acl_parse(text, len, why, sizeof(why));
    if (!a)
        snprintf(err, errlen, "ACL file %s: %s", path, why);
    free(text);
    return a;
}

/* A pattern with %c and %u replaced; NULL when it does not apply. */
static char *fill(const struct entry *e, const uint8_t *user, size_t ulen, bool has_user,
                  const uint8_t *cid, size_t clen, size_t *out_len, bool *oom)
{
    size_t n = 0;
    for (size_t i = 0; i < e->tlen; i++) {
        if (e->topic[i] == '%' && i + 1 < e->tlen &&
            (e->topic[i + 1] == 'c' || e->topic[i + 1] == 'u')) {
            bool u = e->topic[i + 1] == 'u';
            if (u && !has_user)
                return NULL;
            const uint8_t *v = u ? user : cid;
            size_t vl = u ? ulen : clen;
            for (size_t j = 0; j < vl; j++)
                if (v[j] == '/' || v[j] == '+' || v[j] == '#')
                    return NULL;
            n += vl;
            i++;
        } else {
            n++;
        }
    }
    char *t = malloc(n + 1);
    if (!t) {
        *oom = true;
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < e->tlen; i++) {
        if (e->topic[i] == '%' && i + 1 < e->tlen &&
            (e->topic[i + 1] == 'c' || e->topic[i + 1] == 'u')) {
            bool u = e->topic[i + 1] == 'u';
            memcpy(t + k, u ? user : cid, u ? ulen : clen);
            k += u ? ulen : clen;
            i++;
        } else {
            t[k++] = e->topic[i];
        }
    }
    t[k] = '\0';
    *out_len = k;
    return t;
}

struct acl_rules *acl_rules_for(const struct acl *a, const uint8_t *user, size_t ulen,
                                bool has_user, const uint8_t *cid, size_t clen)
{
    struct acl_rules *r = calloc(1, sizeof(*r));
    if (!r || (a->n && !(r->r = calloc(a->n, sizeof(*r->r))))) {
        free(r);
        return NULL;
    }
    for (size_t i = 0; i < a->n; i++) {
        const struct entry *e = &a->e[i];
        char *t = NULL;
        size_t tl = 0;
        bool oom = false;
        if (e->owner == OWN_ANON && !has_user) {
            t = dup_n(e->topic, e->tlen);
            tl = e->tlen;
            oom = !t;
        } else if (e->owner == OWN_USER && has_user && e->ulen == ulen &&
                   memcmp(e->user, user, ulen) == 0) {
            t = dup_n(e->topic, e->tlen);
            tl = e->tlen;
            oom = !t;
        } else if (e->owner == OWN_PATTERN) {
            t = fill(e, user, ulen, has_user, cid, clen, &tl, &oom);
        }
        if (oom) {
            acl_rules_free(r);
            return NULL;
        }
        if (t)
            r->r[r->n++] = (struct rule){e->access, tl, t};
        else if (e->owner == OWN_PATTERN && (e->access & ACL_DENY))
            /* A deny that cannot be filled in for this client denies it
             * everything: leaving it out would fail open. */
            r->r[r->n++] = (struct rule){ACL_DENY, 0, NULL};
    }
    return r;
}

void acl_rules_free(struct acl_rules *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->r[i].topic);
    free(r->r);
    free(r);
}

bool acl_allows(const struct acl_rules *r, const uint8_t *topic, size_t len, int access)
{
    bool allowed = false;
    for (size_t i = 0; i < r->n; i++) {
        const struct rule *x = &r->r[i];
        if (!(x->access & (access | ACL_DENY)))
            continue;
        if (!x->topic)
            return false;
        if (!topic_matches((const uint8_t *)x->topic, x->len, topic, len))
            continue;
        if (x->access & ACL_DENY)
            return false;
        allowed = true;
    }
    return allowed;
}
