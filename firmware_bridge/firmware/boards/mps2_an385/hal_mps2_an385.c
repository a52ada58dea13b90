/* The portable HAL (hal.h) on mps2-an385: UART0 for the link, SysTick for the millisecond tick.
 *
 * Time: hal_millis() is the Cortex-M SysTick clock of arch/cortex_m/systick.c, started here
 * with the core clock.
 *
 * Receive: the UART has a one-byte buffer, so the RX interrupt moves every byte into the ring
 * of arch/cortex_m/rx_ring.c (hal_read_byte) at once, whatever the main loop is doing
 * (computing an inference, or waiting to send a reply the host is not reading yet). Without it
 * a real UART overruns during every inference, and under QEMU board and host can deadlock, each
 * blocked writing to the other. When the ring is full the ISR leaves the byte in the UART and
 * masks the RX interrupt; board_rx_resume unmasks it.
 *
 * Waiting sleeps in WFI (rx_ring.c): the UART0 RX/TX interrupts and SysTick wake the core.
 */
#include <stdint.h>

#include "board.h"
#include "cmsdk_uart.h"
#include "cortex_m.h"
#include "cortex_m_rt.h"
#include "hal.h"

#define UART0 ((cmsdk_uart_regs *)MPS2_UART0_BASE)

/* Move waiting bytes from the UART into the ring; called from the RX ISR, or with interrupts
 * masked. */
static void rx_drain(void)
{
    uint8_t byte;
    while ((UART0->state & CMSDK_UART_STATE_RXFULL) != 0u) {
        if (!cm_rx_ring_has_room()) {
            UART0->ctrl &= ~CMSDK_UART_CTRL_RXINTEN;
            cm_rx_ring_pause();
            return;
        }
        (void)cmsdk_uart_try_read(UART0, &byte);
        cm_rx_ring_put(byte);
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

void board_rx_resume(void)
{
    /* Unmask first, then drain: a byte that reaches the UART while RXINTEN is clear raises no
     * interrupt when it is set again (the UART latches RX interrupts only on arrival), so
     * draining before unmasking could leave one byte stuck in the UART and the host held back
     * for good. */
    UART0->ctrl |= CMSDK_UART_CTRL_RXINTEN;
    rx_drain();
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
