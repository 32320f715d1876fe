/* engine_hooks.h - what the storage engine's C API cannot set: where its
 * messages go, and what it does after a failed write.
 *
 * Messages: by default RocksDB writes a LOG file into the store directory.
 * On a full disk that file is the first thing to fail, and the engine
 * (Debian's build keeps its assertions) aborts the process on the next
 * line it tries to write there. Its warnings and errors go to the broker's
 * log instead: no file, and the engine's complaints where the operator
 * looks.
 *
 * Failures: after a background error the engine would resume by itself
 * once there is space again, but when the failed write was the first one
 * into a fresh write-ahead log, it resumes on that broken log and aborts
 * on the next write (RocksDB 7.8). So automatic recovery is off: the
 * engine reports the error through on_error, refuses writes while the
 * error stands, and the store recovers by closing and opening it again
 * (store.c, store_recover). The engine also does not flush its write
 * buffers on close (they are in its log, replayed on open): a flush at
 * close would write through a log that has failed. */
#ifndef PETREL_STORE_ENGINE_HOOKS_H
#define PETREL_STORE_ENGINE_HOOKS_H

#include <rocksdb/c.h>

#ifdef __cplusplus
extern "C" {
#endif

/* on_error(arg, message) runs on an engine thread for every background
 * error, after the engine has logged it. */
void engine_hooks_install(rocksdb_options_t *opts, void (*on_error)(void *arg, const char *what),
                          void *arg);

#ifdef __cplusplus
}
#endif

#endif
