/* HAL for the host virtual board: bytes on stdin/stdout (a pty master, a pipe or a terminal).
 * End of input (the other side closed) ends the process. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "hal.h"

static uint8_t in_buf[4096];
static size_t in_pos, in_len;

void hal_init(void)
{
    in_pos = in_len = 0;
}

int hal_read_byte(uint8_t *byte, uint32_t timeout_ms)
{
    if (in_pos == in_len) {
        struct pollfd p;
        ssize_t n;
        int ready;
        p.fd = STDIN_FILENO;
        p.events = POLLIN;
        p.revents = 0;
        ready = poll(&p, 1, (int)timeout_ms);
        if (ready < 0 && errno == EINTR)
            return 0;
        if (ready <= 0)
            return 0;
        n = read(STDIN_FILENO, in_buf, sizeof in_buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            return 0;
        if (n <= 0)
            exit(0); /* EOF, or EIO on a pty whose other side has gone */
        in_pos = 0;
        in_len = (size_t)n;
    }
    *byte = in_buf[in_pos++];
    return 1;
}

void hal_write(const uint8_t *data, uint32_t len)
{
    while (len) {
        ssize_t n = write(STDOUT_FILENO, data, len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            exit(1);
        }
        data += n;
        len -= (uint32_t)n;
    }
}

uint32_t hal_millis(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint32_t)((uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u);
}
