/* Bring-up self-test for a Cortex-M board port: a line-oriented responder over the HAL only,
 * to prove UART, tick, WFI wake-up, memory placement and fault reporting before the real
 * firmware runs. One source for every board: `make BOARD=<name> selftest` builds it with the
 * board's HAL_SRCS (firmware_bridge.boards.qemu.build_selftest does that).
 *
 * Board parameters, passed as -D options from its board.mk: PCL_BOARD_NAME (BOARD_NAME) names
 * the board in the replies; SELFTEST_BIG_BYTES (same name in board.mk) sizes the PCL_BIG_RAM
 * test array, so MEM exercises the RAM the board's weight memory will live in.
 *
 * Commands (ASCII, one per line, '\n' terminated, at most SELFTEST_LINE_MAX characters):
 *   PING            -> "PONG <board>"
 *   MS              -> "MS <hal_millis()>"
 *   HOLD <ms>       -> does not read for <ms> (bytes pile up in the receive ring): "HELD"
 *   MONO <ms>       -> reads hal_millis() in a loop for <ms>: "MONO <reads> <backward steps>"
 *   WAIT <ms>       -> hal_read_byte(.., ms): "WAIT timeout <elapsed_ms>" or
 *                      "WAIT byte <value> <elapsed_ms>"
 *   SINK <n>        -> "READY", then reads n raw bytes: "SINK <n> <crc32 hex> <elapsed_ms>",
 *                      or "SINK short <received>" if the line went quiet for 2 s
 *   SOURCE <n>      -> n raw bytes, byte i = (i * 7 + 3) mod 256
 *   ECHOALL         -> "ECHOING", then every byte is echoed back until reset
 *   MEM             -> writes and reads back a pattern over the PCL_BIG_RAM test array:
 *                      "MEM <address hex> <bytes> ok" or "MEM <address hex> <bytes> bad <index>"
 *   DIV0            -> divides by zero (the fault handler must report it)
 *   RESET           -> "RESETTING", then a system reset through AIRCR
 * Anything else -> "ERR unknown"; an over-long line -> "ERR long".
 * At boot the board sends "BOOT <board> selftest" (lost if no one has the port open).
 */
#include <stdint.h>

#include "cortex_m_rt.h"
#include "hal.h"

#define SELFTEST_LINE_MAX 48u
#define SELFTEST_IDLE_TIMEOUT_MS 2000u
#ifndef PCL_BOARD_NAME
#error "PCL_BOARD_NAME (the board's BOARD_NAME) is required"
#endif
#ifndef SELFTEST_BIG_BYTES
#error "SELFTEST_BIG_BYTES (bytes of PCL_BIG_RAM to test, from the board's board.mk) is required"
#endif
#ifndef PCL_BIG_RAM
#define PCL_BIG_RAM
#endif

static PCL_BIG_RAM uint8_t big_test_memory[SELFTEST_BIG_BYTES];

static void send_text(const char *text)
{
    uint32_t n = 0;
    while (text[n] != '\0') {
        ++n;
    }
    hal_write((const uint8_t *)text, n);
}

static void send_u32(uint32_t value)
{
    char digits[11];
    uint32_t n = 0;
    do {
        digits[n++] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value != 0u);
    while (n > 0u) {
        --n;
        hal_write((const uint8_t *)&digits[n], 1u);
    }
}

static void send_hex32(uint32_t value)
{
    static const char hex[] = "0123456789abcdef";
    char out[8];
    int i;
    for (i = 0; i < 8; ++i) {
        out[i] = hex[(value >> (28 - 4 * i)) & 0xFu];
    }
    hal_write((const uint8_t *)out, 8u);
}

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), same as zlib.crc32. */
static uint32_t crc32_update(uint32_t crc, uint8_t byte)
{
    int bit;
    crc ^= byte;
    for (bit = 0; bit < 8; ++bit) {
        crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc;
}

static int starts_with(const char *line, const char *prefix)
{
    while (*prefix != '\0') {
        if (*line++ != *prefix++) {
            return 0;
        }
    }
    return 1;
}

static int equals(const char *a, const char *b)
{
    while (*a != '\0' && *a == *b) {
        ++a;
        ++b;
    }
    return *a == *b;
}

/* Decimal argument after the command word; 0 on anything that is not a number. */
static uint32_t parse_u32(const char *text)
{
    uint32_t value = 0;
    while (*text == ' ') {
        ++text;
    }
    while (*text >= '0' && *text <= '9') {
        value = value * 10u + (uint32_t)(*text - '0');
        ++text;
    }
    return value;
}

static void cmd_wait(uint32_t timeout_ms)
{
    uint8_t byte;
    const uint32_t start = hal_millis();
    const int got = hal_read_byte(&byte, timeout_ms);
    const uint32_t elapsed = hal_millis() - start;
    if (got) {
        send_text("WAIT byte ");
        send_u32(byte);
    } else {
        send_text("WAIT timeout");
    }
    send_text(" ");
    send_u32(elapsed);
    send_text("\n");
}

static void cmd_monotonic(uint32_t duration_ms)
{
    const uint32_t start = hal_millis();
    uint32_t previous = start;
    uint32_t reads = 0;
    uint32_t backward = 0;
    for (;;) {
        const uint32_t now = hal_millis();
        ++reads;
        if ((uint32_t)(now - previous) > 0x80000000u) {
            ++backward;
        }
        previous = now;
        if ((uint32_t)(now - start) >= duration_ms) {
            break;
        }
    }
    send_text("MONO ");
    send_u32(reads);
    send_text(" ");
    send_u32(backward);
    send_text("\n");
}

static void cmd_sink(uint32_t count)
{
    uint32_t crc = 0xFFFFFFFFu;
    uint32_t received = 0;
    uint32_t start;
    uint8_t byte;
    send_text("READY\n");
    start = hal_millis();
    while (received < count) {
        if (!hal_read_byte(&byte, SELFTEST_IDLE_TIMEOUT_MS)) {
            send_text("SINK short ");
            send_u32(received);
            send_text("\n");
            return;
        }
        crc = crc32_update(crc, byte);
        ++received;
    }
    send_text("SINK ");
    send_u32(count);
    send_text(" ");
    send_hex32(crc ^ 0xFFFFFFFFu);
    send_text(" ");
    send_u32(hal_millis() - start);
    send_text("\n");
}

static void cmd_source(uint32_t count)
{
    uint8_t chunk[64];
    uint32_t i = 0;
    while (i < count) {
        uint32_t n = 0;
        while (n < sizeof chunk && i < count) {
            chunk[n++] = (uint8_t)(i * 7u + 3u);
            ++i;
        }
        hal_write(chunk, n);
    }
}

static void cmd_echo_forever(void)
{
    uint8_t byte;
    send_text("ECHOING\n");
    for (;;) {
        if (hal_read_byte(&byte, 1000u)) {
            hal_write(&byte, 1u);
        }
    }
}

static void cmd_mem(void)
{
    uint32_t i;
    uint32_t bad = SELFTEST_BIG_BYTES;
    for (i = 0; i < SELFTEST_BIG_BYTES; ++i) {
        big_test_memory[i] = (uint8_t)((i >> 8) ^ i ^ 0x5Au);
    }
    for (i = 0; i < SELFTEST_BIG_BYTES; ++i) {
        if (big_test_memory[i] != (uint8_t)((i >> 8) ^ i ^ 0x5Au)) {
            bad = i;
            break;
        }
    }
    send_text("MEM ");
    send_hex32((uint32_t)(uintptr_t)big_test_memory);
    send_text(" ");
    send_u32(SELFTEST_BIG_BYTES);
    if (bad == SELFTEST_BIG_BYTES) {
        send_text(" ok\n");
    } else {
        send_text(" bad ");
        send_u32(bad);
        send_text("\n");
    }
}

static volatile uint32_t divisor_zero;

static void run_command(const char *line)
{
    if (equals(line, "PING")) {
        send_text("PONG " PCL_BOARD_NAME "\n");
    } else if (equals(line, "MS")) {
        send_text("MS ");
        send_u32(hal_millis());
        send_text("\n");
    } else if (starts_with(line, "HOLD ")) {
        const uint32_t start = hal_millis();
        const uint32_t hold_ms = parse_u32(line + 5);
        while ((uint32_t)(hal_millis() - start) < hold_ms) {
        }
        send_text("HELD\n");
    } else if (starts_with(line, "MONO ")) {
        cmd_monotonic(parse_u32(line + 5));
    } else if (starts_with(line, "WAIT ")) {
        cmd_wait(parse_u32(line + 5));
    } else if (starts_with(line, "SINK ")) {
        cmd_sink(parse_u32(line + 5));
    } else if (starts_with(line, "SOURCE ")) {
        cmd_source(parse_u32(line + 7));
    } else if (equals(line, "ECHOALL")) {
        cmd_echo_forever();
    } else if (equals(line, "MEM")) {
        cmd_mem();
    } else if (equals(line, "DIV0")) {
        send_u32(1000u / divisor_zero);
        send_text("\n");
    } else if (equals(line, "RESET")) {
        send_text("RESETTING\n");
        cm_system_reset();
    } else {
        send_text("ERR unknown\n");
    }
}

int main(void)
{
    char line[SELFTEST_LINE_MAX + 1u];
    uint32_t length = 0;
    int overlong = 0;
    uint8_t byte;

    hal_init();
    send_text("BOOT " PCL_BOARD_NAME " selftest\n");
    for (;;) {
        if (!hal_read_byte(&byte, 1000u)) {
            continue;
        }
        if (byte == '\r') {
            continue;
        }
        if (byte != '\n') {
            if (length < SELFTEST_LINE_MAX) {
                line[length++] = (char)byte;
            } else {
                overlong = 1;
            }
            continue;
        }
        line[length] = '\0';
        if (overlong) {
            send_text("ERR long\n");
        } else if (length > 0u) {
            run_command(line);
        }
        length = 0;
        overlong = 0;
    }
}
