/* acl.h - access control files in Mosquitto's format.
 *
 *   # comment
 *   topic [read|write|readwrite|deny] TOPIC     (before any user line:
 *                                                clients without a username)
 *   user NAME
 *   topic [read|write|readwrite|deny] TOPIC     (that user)
 *   pattern [read|write|readwrite|deny] TOPIC   (every client; %c is its
 *                                                client id, %u its username)
 *
 * The access word may be left out (readwrite). TOPIC is the rest of the
 * line and may hold wildcards. A client may do what one of its rules
 * allows and no deny rule matches; with an ACL, anything else is refused.
 * SUBSCRIBE asks for read access to its filter (taken as a topic: a rule
 * "a/#" covers the filter "a/+/b"), and every message is checked again
 * when it is delivered. Parsing is sans-I/O (acl_parse).
 */
#ifndef PETREL_AUTH_ACL_H
#define PETREL_AUTH_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum acl_access { ACL_READ = 1, ACL_WRITE = 2, ACL_DENY = 4 };

struct acl;
struct acl_rules;

/* NULL with a message naming the line in err when the text has an error
 * (an unknown keyword, an invalid topic): a file that does not say what
 * its author meant is not used. */
struct acl *acl_parse(const char *text, size_t len, char *err, size_t errlen);
struct acl *acl_load(const char *path, char *err, size_t errlen);
void acl_free(struct acl *a);
size_t acl_rule_count(const struct acl *a);

/* The rules of one client: its user's (or, without a username, the
 * anonymous ones), then the patterns, with %c and %u filled in. A pattern
 * cannot be filled in when the value holds '/', '+' or '#', or when it
 * uses %u and there is no username: an allowing one is then left out, a
 * deny one denies the client everything. NULL when out of memory. */
struct acl_rules *acl_rules_for(const struct acl *a, const uint8_t *user, size_t ulen,
                                bool has_user, const uint8_t *cid, size_t clen);
void acl_rules_free(struct acl_rules *r);

/* May the client have access (ACL_READ or ACL_WRITE) to the topic? */
bool acl_allows(const struct acl_rules *r, const uint8_t *topic, size_t len, int access);

#endif
