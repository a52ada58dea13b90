/* The portable HAL (hal.h) on mps2-an385: UART0 for the link, SysTick for the millisecond tick.
 *
 * Time: hal_millis() is the Cortex-M SysTick clock of arch/cortex_m/systick.c, started here
 * with the core clock.
 *
 * Receive: the UART has a one-byte buffer, so the RX interrupt moves every byte into a ring
 * (RX_RING_BYTES) at once, whatever the main loop is doing (computing an inference, or waiting
 * to send a reply the host is not reading yet). Without it a real UART overruns during every
 * inference, and under QEMU board and host can deadlock, each blocked writing to the other.
 * Only when the ring is full does the ISR leave a byte in the UART and mask the RX interrupt
 * (QEMU then holds further bytes back; silicon would overrun); hal_read_byte unmasks it.
 *
 * Waiting is done with WFI so that an idle board (and an idle QEMU) sleeps: the UART0 RX/TX
 * interrupts and SysTick are the wake-up sources. The check-then-sleep runs with
 * PRIMASK set, so a byte that arrives between the check and the WFI still ends the WFI
 * (a pending interrupt wakes the core even while masked) and is never slept through.
 */
#include <stdint.h>

#include "board.h"
#include "cmsdk_uart.h"
#include "cortex_m.h"
#include "cortex_m_rt.h"
#include "hal.h"

#define UART0 ((cmsdk_uart_regs *)MPS2_UART0_BASE)

/* Power of two; 64 KiB holds several maximal request frames (retries included). */
#ifndef RX_RING_BYTES
#define RX_RING_BYTES 65536u
#endif
#if (RX_RING_BYTES & (RX_RING_BYTES - 1u)) != 0u
#error "RX_RING_BYTES must be a power of two"
#endif

static volatile uint8_t rx_ring[RX_RING_BYTES];
static volatile uint32_t rx_head; /* written by the ISR only: bytes stored so far */
static volatile uint32_t rx_tail; /* written by the thread only: bytes consumed so far */
static volatile uint32_t rx_paused; /* ring was full: RX interrupt masked, byte left in UART */

/* Move waiting bytes from the UART into the ring; called from the RX ISR, or with interrupts
 * masked. */
static void rx_drain(void)
{
    uint8_t byte;
    while ((UART0->state & CMSDK_UART_STATE_RXFULL) != 0u) {
        if (rx_head - rx_tail >= RX_RING_BYTES) {
            UART0->ctrl &= ~CMSDK_UART_CTRL_RXINTEN;
            rx_paused = 1u;
            return;
        }
        (void)cmsdk_uart_try_read(UART0, &byte);
        rx_ring[rx_head & (RX_RING_BYTES - 1u)] = byte;
        rx_head = rx_head + 1u;
    }
}

void uart0_rx_handler(void)
{
    cmsdk_uart_clear_interrupts(UART0);
    rx_drain();
}

void uart0_tx_handler(void)
{
    cmsdk_uart_clear_interrupts(UART0);
}

void hal_init(void)
{
    (void)cm_tick_start(MPS2_SYSCLK_HZ);

    cmsdk_uart_init(UART0, MPS2_SYSCLK_HZ, MPS2_UART0_BAUD);
    cm_nvic_enable(MPS2_UART0_RX_IRQ);
    cm_nvic_enable(MPS2_UART0_TX_IRQ);
    cm_enable_irq();
}

static int take_from_ring(uint8_t *byte)
{
    if (rx_tail == rx_head) {
        return 0;
    }
    *byte = rx_ring[rx_tail & (RX_RING_BYTES - 1u)];
    rx_tail = rx_tail + 1u;
    if (rx_paused != 0u) {
        /* Room again. Unmask first, then drain: a byte that reaches the UART while RXINTEN is
         * clear raises no interrupt when it is set again (the UART latches RX interrupts only
         * on arrival), so draining before unmasking could leave one byte stuck in the UART and
         * the host held back for good. */
        cm_disable_irq();
        rx_paused = 0u;
        UART0->ctrl |= CMSDK_UART_CTRL_RXINTEN;
        rx_drain();
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

void hal_write(const uint8_t *data, uint32_t len)
{
    uint32_t i;
    for (i = 0; i < len; ++i) {
        while (!cmsdk_uart_tx_ready(UART0)) {
            cm_disable_irq();
            if (!cmsdk_uart_tx_ready(UART0)) {
                cm_wfi();
            }
            cm_enable_irq();
        }
        cmsdk_uart_put(UART0, data[i]);
    }
}

void board_panic_write(const char *text)
{
    /* Polling only: may run with interrupts masked or from a fault handler. */
    for (; *text != '\0'; ++text) {
        while (!cmsdk_uart_tx_ready(UART0)) {
        }
        cmsdk_uart_put(UART0, (uint8_t)*text);
    }
}
