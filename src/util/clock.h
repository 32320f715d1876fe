/* clock.h - the two clocks the broker uses: monotonic milliseconds for
 * timeouts (keepalive, will delay, session expiry while running) and
 * wall-clock milliseconds for what must survive a restart (message expiry). */
#ifndef PETREL_UTIL_CLOCK_H
#define PETREL_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#endif
