/* fuzz_config.c - libFuzzer target for the configuration parser.
 *
 * The input is parsed as a configuration file (config_parse_string), then
 * finalized and freed. The log is silenced. An include_dir line in the input
 * makes the parser read *.conf files of that directory: it only reads regular
 * files, so this is harmless, and nested include_dir is refused. */
#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config c;
    char err[512];

    log_set_mask(0);
    config_init(&c);
    if (config_parse_string(&c, (const char *)data, size, "fuzz.conf", err, sizeof err) == 0)
        (void)config_finalize(&c, err, sizeof err);
    config_free(&c);
    return 0;
}
