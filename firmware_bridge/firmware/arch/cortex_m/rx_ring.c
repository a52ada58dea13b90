/* hal_read_byte() of hal.h for a Cortex-M board whose UART receive interrupt fills a ring.
 *
 * The board's UART ISR moves every waiting byte in with cm_rx_ring_put() while
 * cm_rx_ring_has_room(), so nothing is lost while the firmware computes. When the ring is
 * full it leaves the bytes in the UART, masks its receive interrupt and calls
 * cm_rx_ring_pause() (QEMU then holds further bytes back; silicon without flow control would
 * overrun). Once the thread has taken a byte out again, board_rx_resume() runs with interrupts
 * masked: unmask the receive interrupt and drain the UART, in whichever order the board's UART
 * needs so that no byte is left waiting without an interrupt.
 *
 * Waiting sleeps in WFI; the check-then-sleep runs with PRIMASK set, so a byte that arrives
 * between the check and the WFI still ends the WFI (a pending interrupt wakes the core even
 * while masked) and is never slept through. A waiting byte is returned before the clock is
 * read: under QEMU every SysTick read is an exit to the emulator.
 *
 * Size: RX_RING_BYTES (a power of two; default the board's BOARD_RX_RING_BYTES, board.h).
 */
#include <stdint.h>

#include "board.h"
#include "cortex_m.h"
#include "cortex_m_rt.h"
#include "hal.h"

#ifndef RX_RING_BYTES
#define RX_RING_BYTES BOARD_RX_RING_BYTES
#endif
#if (RX_RING_BYTES & (RX_RING_BYTES - 1u)) != 0u
#error "RX_RING_BYTES must be a power of two"
#endif

static volatile uint8_t rx_ring[RX_RING_BYTES];
static volatile uint32_t rx_head;   /* written by the ISR only: bytes stored so far */
static volatile uint32_t rx_tail;   /* written by the thread only: bytes consumed so far */
static volatile uint32_t rx_paused; /* ring was full: the board masked its receive interrupt */

int cm_rx_ring_has_room(void)
{
    return rx_head - rx_tail < RX_RING_BYTES;
}

void cm_rx_ring_put(uint8_t byte)
{
    rx_ring[rx_head & (RX_RING_BYTES - 1u)] = byte;
    rx_head = rx_head + 1u;
}

void cm_rx_ring_pause(void)
{
    rx_paused = 1u;
}

static int take_from_ring(uint8_t *byte)
{
    if (rx_tail == rx_head) {
        return 0;
    }
    *byte = rx_ring[rx_tail & (RX_RING_BYTES - 1u)];
    rx_tail = rx_tail + 1u;
    if (rx_paused != 0u) {
        cm_disable_irq(); /* the ISR must not run between the unmask and the drain */
        rx_paused = 0u;
        board_rx_resume();
        cm_enable_irq();
    }
    return 1;
}

int hal_read_byte(uint8_t *byte, uint32_t timeout_ms)
{
    uint32_t start;
    if (take_from_ring(byte)) {
        return 1; /* streaming: no clock read per byte */
    }
    start = hal_millis();
    for (;;) {
        if (take_from_ring(byte)) {
            return 1;
        }
        if (timeout_ms == 0u || (uint32_t)(hal_millis() - start) >= timeout_ms) {
            return 0;
        }
        cm_disable_irq();
        if (rx_tail == rx_head) {
            cm_wfi();
        }
        cm_enable_irq();
    }
}
