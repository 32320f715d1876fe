/* auth.h - who may connect, and what they may do: each listener's
 * password_file (auth/passwd.h) and acl_file (auth/acl.h), read at
 * startup and again on SIGHUP.
 *
 * A listener without a password file accepts any username (and, with
 * allow_anonymous, none), as Mosquitto does. With one, a client that
 * gives a username must give that user's password. With an ACL file, a
 * connection gets its rules at CONNECT (a reload applies to connections
 * made after it).
 */
#ifndef PETREL_BROKER_AUTH_H
#define PETREL_BROKER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct acl_rules;
struct broker;
struct listener;

/* Read every listener's password and ACL file. -1 (logged) when one
 * cannot be read: the broker does not start without the users and rules
 * it was told of. */
int auth_open(struct broker *b);
/* SIGHUP: read them again; a file that cannot be read keeps its old
 * contents (logged). */
void auth_reload(struct broker *b);
void auth_close(struct broker *b);

/* Does the listener check passwords? */
bool auth_has_passwords(const struct listener *l);
/* Is this the user's password (has_password false: none was given)? */
bool auth_password_ok(const struct listener *l, const uint8_t *user, size_t ulen,
                      bool has_password, const uint8_t *pw, size_t plen);
/* The rules of a client of the listener in *out (NULL: no ACL file, every
 * access allowed). -1 when out of memory. */
int auth_acl_rules(const struct listener *l, const uint8_t *user, size_t ulen, bool has_user,
                   const uint8_t *cid, size_t clen, struct acl_rules **out);

#endif
