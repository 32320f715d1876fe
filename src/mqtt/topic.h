/* topic.h - topic names and topic filters (MQTT 5 section 4.7).
 *
 * Pure functions over byte strings; nothing allocates.
 */
#ifndef PETREL_MQTT_TOPIC_H
#define PETREL_MQTT_TOPIC_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* A topic name (PUBLISH): at least one byte, valid UTF-8 without U+0000,
 * no '+' or '#'. Length at most 65535. */
bool topic_name_valid(const uint8_t *s, size_t len);

/* A topic filter (SUBSCRIBE): at least one byte, valid UTF-8 without U+0000,
 * '+' only as a whole level, '#' only as the whole last level.
 * Shared subscriptions ("$share/group/filter") are valid filters when the
 * group is non-empty and has no '+', '#' or '/', and the filter after it is
 * valid. "$queue/filter" likewise. */
bool topic_filter_valid(const uint8_t *s, size_t len);

/* Does topic name t match filter f? Filters starting with a wildcard do not
 * match topics starting with '$' (section 4.7.2). f must be a plain filter
 * (not $share/$queue). */
bool topic_matches(const uint8_t *f, size_t flen, const uint8_t *t, size_t tlen);

/* Split a shared subscription filter. "$share/g/a/b" gives group "g" and
 * filter "a/b"; "$queue/a/b" gives group "$queue" and filter "a/b".
 * Returns false (outputs untouched) when f is not a shared subscription. */
bool topic_shared_split(const uint8_t *f, size_t flen,
                        const uint8_t **group, size_t *glen,
                        const uint8_t **filter, size_t *filter_len);

/* Does the filter contain '+' or '#'? */
bool topic_has_wildcard(const uint8_t *f, size_t flen);

#endif
