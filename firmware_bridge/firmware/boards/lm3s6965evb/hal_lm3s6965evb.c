/* The portable HAL (hal.h) on the Stellaris LM3S6965: UART0 (PL011) for the link, SysTick for
 * the millisecond tick. Same shape as the mps2-an385 HAL; what differs is the chip around the
 * core: the clock has to be set up (PLL to 50 MHz) and the UART is a PL011 with FIFOs.
 *
 * Clock: hal_init programs RCC for the PLL from the 8 MHz crystal, divided to 50 MHz, the same
 * rate on silicon and under QEMU (whose reset clock is not the part's, see board.h).
 *
 * Time: hal_millis() is the Cortex-M SysTick clock of arch/cortex_m/systick.c, started here
 * with the core clock.
 *
 * Receive: the UART0 interrupt (RX at the FIFO level, RT for the bytes below it) moves every
 * waiting byte into a ring (RX_RING_BYTES) at once, whatever the main loop is doing, so
 * nothing is lost while the firmware computes. Only when the ring is full does the ISR leave
 * the bytes in the FIFO and mask the receive interrupts (QEMU then holds further bytes back;
 * silicon, which has no flow control on UART0, would overrun); hal_read_byte unmasks them.
 *
 * Waiting is done with WFI so that an idle board (and an idle QEMU) sleeps: UART0 and SysTick
 * are the wake-up sources. The check-then-sleep runs with PRIMASK set, so a byte that arrives
 * between the check and the WFI still ends the WFI and is never slept through.
 *
 * Transmit busy-waits on a full TX FIFO (16 bytes, ~1.4 ms at 115200 baud on silicon; QEMU's
 * model never reports it full): the protocol handler only sends while it has nothing else to do.
 */
#include <stdint.h>

#include "board.h"
#include "cortex_m.h"
#include "cortex_m_rt.h"
#include "hal.h"
#include "pl011_uart.h"

#define UART0 ((pl011_regs *)LM3S_UART0_BASE)
#define SYSCTL(offset) CM_REG(LM3S_SYSCTL_BASE + (offset))
#define GPIOA(offset) CM_REG(LM3S_GPIOA_BASE + (offset))

/* Power of two. 4 KiB holds two maximal request frames (MAX_PAYLOAD_BYTES = 2 KiB in board.mk)
 * of the 64 KB of SRAM the weights, neuron state and frame buffers share. */
#ifndef RX_RING_BYTES
#define RX_RING_BYTES 4096u
#endif
#if (RX_RING_BYTES & (RX_RING_BYTES - 1u)) != 0u
#error "RX_RING_BYTES must be a power of two"
#endif

static volatile uint8_t rx_ring[RX_RING_BYTES];
static volatile uint32_t rx_head;   /* written by the ISR only: bytes stored so far */
static volatile uint32_t rx_tail;   /* written by the thread only: bytes consumed so far */
static volatile uint32_t rx_paused; /* ring was full: receive interrupts masked, bytes in the FIFO */

void uart0_handler(void);

/* Move waiting bytes from the RX FIFO into the ring; called from the ISR, or with interrupts
 * masked. */
static void rx_drain(void)
{
    uint8_t byte;
    while ((UART0->fr & PL011_FR_RXFE) == 0u) {
        if (rx_head - rx_tail >= RX_RING_BYTES) {
            UART0->im &= ~PL011_INT_RECEIVE;
            rx_paused = 1u;
            return;
        }
        byte = (uint8_t)(UART0->dr & 0xFFu);
        rx_ring[rx_head & (RX_RING_BYTES - 1u)] = byte;
        rx_head = rx_head + 1u;
    }
}

void uart0_handler(void)
{
    /* Acknowledge first, then empty the FIFO: a byte arriving after the last FIFO check raises
     * the interrupt again (QEMU on the FIFO's empty -> non-empty step, silicon by RX or RT). */
    UART0->icr = PL011_INT_RECEIVE;
    rx_drain();
}

/* PLL from the 8 MHz main crystal, system clock = 200 MHz / (SYSDIV + 1), in the order the
 * data sheet gives: run from the raw oscillator (bypass, no divider), start the crystal if it
 * is off, power the PLL, set the divider, wait for lock, switch over. */
static void clock_init(void)
{
    uint32_t rcc = SYSCTL(LM3S_SYSCTL_RCC_OFFSET);
    SYSCTL(LM3S_SYSCTL_RCC2_OFFSET) &= ~LM3S_RCC2_USERCC2; /* RCC, not RCC2, is in charge */
    rcc |= LM3S_RCC_BYPASS;
    rcc &= ~LM3S_RCC_USESYSDIV;
    SYSCTL(LM3S_SYSCTL_RCC_OFFSET) = rcc;
    if ((rcc & LM3S_RCC_MOSCDIS) != 0u) {
        /* Silicon resets with the main oscillator off (running on the internal one): start
         * the crystal and give it a few ms to settle before anything is clocked from it.
         * QEMU resets with it on. */
        volatile uint32_t settle = LM3S_MOSC_SETTLE_LOOPS;
        rcc &= ~LM3S_RCC_MOSCDIS;
        SYSCTL(LM3S_SYSCTL_RCC_OFFSET) = rcc;
        while (settle > 0u) {
            settle = settle - 1u;
        }
    }
    SYSCTL(LM3S_SYSCTL_MISC_OFFSET) = LM3S_SYSCTL_RIS_PLLLRIS; /* forget an earlier lock */
    rcc &= ~(LM3S_RCC_XTAL_MASK | LM3S_RCC_OSCSRC_MASK | LM3S_RCC_PWRDN);
    rcc |= LM3S_RCC_XTAL_8MHZ << LM3S_RCC_XTAL_SHIFT;
    SYSCTL(LM3S_SYSCTL_RCC_OFFSET) = rcc;
    rcc &= ~LM3S_RCC_SYSDIV_MASK;
    rcc |= (LM3S_RCC_SYSDIV << LM3S_RCC_SYSDIV_SHIFT) | LM3S_RCC_USESYSDIV;
    SYSCTL(LM3S_SYSCTL_RCC_OFFSET) = rcc;
    /* Locks within ~0.5 ms on silicon; QEMU raises the flag when PWRDN is cleared. */
    while ((SYSCTL(LM3S_SYSCTL_RIS_OFFSET) & LM3S_SYSCTL_RIS_PLLLRIS) == 0u) {
    }
    rcc &= ~LM3S_RCC_BYPASS;
    SYSCTL(LM3S_SYSCTL_RCC_OFFSET) = rcc;
}

void hal_init(void)
{
    clock_init();

    (void)cm_tick_start(LM3S_SYSCLK_HZ);

    /* Clock the UART and its pins (a few cycles before first use: the read-backs), hand PA0/PA1
     * to UART0. */
    SYSCTL(LM3S_SYSCTL_RCGC1_OFFSET) |= LM3S_RCGC1_UART0;
    SYSCTL(LM3S_SYSCTL_RCGC2_OFFSET) |= LM3S_RCGC2_GPIOA;
    (void)SYSCTL(LM3S_SYSCTL_RCGC1_OFFSET);
    (void)SYSCTL(LM3S_SYSCTL_RCGC2_OFFSET);
    GPIOA(LM3S_GPIO_AFSEL_OFFSET) |= LM3S_UART0_PINS;
    GPIOA(LM3S_GPIO_DEN_OFFSET) |= LM3S_UART0_PINS;

    pl011_init(UART0, LM3S_SYSCLK_HZ, LM3S_UART0_BAUD);
    cm_nvic_enable(LM3S_UART0_IRQ);
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
        /* Room again: unmask, then drain what waits in the FIFO (with interrupts masked, so
         * the ISR cannot run in between); a byte arriving after the drain interrupts as usual. */
        cm_disable_irq();
        rx_paused = 0u;
        UART0->im |= PL011_INT_RECEIVE;
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
        while (!pl011_tx_ready(UART0)) {
        }
        pl011_put(UART0, data[i]);
    }
}

void board_panic_write(const char *text)
{
    /* Polling only: may run with interrupts masked or from a fault handler. */
    for (; *text != '\0'; ++text) {
        while (!pl011_tx_ready(UART0)) {
        }
        pl011_put(UART0, (uint8_t)*text);
    }
}
