/* auth.h - who may connect: each listener's password_file (auth/passwd.h),
 * read at startup and again on SIGHUP.
 *
 * A listener without a password file accepts any username (and, with
 * allow_anonymous, none), as Mosquitto does. With one, a client that
 * gives a username must give that user's password.
 */
#ifndef PETREL_BROKER_AUTH_H
#define PETREL_BROKER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct listener;

/* Read every listener's password file. -1 (logged) when one cannot be
 * read: the broker does not start without the users it was told of. */
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

#endif
