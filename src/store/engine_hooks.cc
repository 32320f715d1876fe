/* engine_hooks.cc - see engine_hooks.h. The only C++ in the broker: it
 * reaches the C++ options that the engine's C API wraps. */
#include "store/engine_hooks.h"

#include <rocksdb/env.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>

#include <cstdarg>
#include <cstdio>
#include <memory>

extern "C" {
#include "util/log.h"
}

/* The C API's options object, as its implementation defines it: the C++
 * options are its one member. */
struct rocksdb_options_t {
    rocksdb::Options rep;
};

namespace {

class BrokerLogger final : public rocksdb::Logger {
public:
    BrokerLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}

    using rocksdb::Logger::Logv;

    /* Lines without a level (the options dump at open) are not wanted. */
    void Logv(const char *, va_list) override {}

    void Logv(const rocksdb::InfoLogLevel level, const char *fmt, va_list ap) override
    {
        if (level < GetInfoLogLevel() || level == rocksdb::InfoLogLevel::HEADER_LEVEL)
            return;
        char line[1024];
        vsnprintf(line, sizeof(line), fmt, ap);
        log_msg(level >= rocksdb::InfoLogLevel::ERROR_LEVEL ? LOG_ERROR : LOG_WARNING,
                "store engine: %s", line);
    }
};

class ErrorListener final : public rocksdb::EventListener {
public:
    ErrorListener(void (*on_error)(void *, const char *), void *arg)
        : on_error_(on_error), arg_(arg)
    {
    }

    void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status *error) override
    {
        if (error && !error->ok())
            on_error_(arg_, error->ToString().c_str());
    }

    void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status,
                              bool *auto_recovery) override
    {
        *auto_recovery = false;
    }

private:
    void (*on_error_)(void *, const char *);
    void *arg_;
};

} // namespace

void engine_hooks_install(rocksdb_options_t *opts, void (*on_error)(void *arg, const char *what),
                          void *arg)
{
    opts->rep.info_log = std::make_shared<BrokerLogger>();
    opts->rep.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
    opts->rep.listeners.push_back(std::make_shared<ErrorListener>(on_error, arg));
    opts->rep.avoid_flush_during_shutdown = true;
}
