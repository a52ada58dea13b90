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
 * waiting byte into the ring of arch/cortex_m/rx_ring.c (hal_read_byte) at once, whatever the
 * main loop is doing, so nothing is lost while the firmware computes. When the ring is full the
 * ISR leaves the bytes in the FIFO and masks the receive interrupts (silicon, which has no flow
 * control on UART0, would then overrun); board_rx_resume unmasks them. Waiting sleeps in WFI
 * (rx_ring.c): UART0 and SysTick wake the core.
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

void uart0_handler(void);

/* Move waiting bytes from the RX FIFO into the ring; called from the ISR, or with interrupts
 * masked. */
static void rx_drain(void)
{
    uint8_t byte;
    while ((UART0->fr & PL011_FR_RXFE) == 0u) {
        if (!cm_rx_ring_has_room()) {
            UART0->im &= ~PL011_INT_RECEIVE;
            cm_rx_ring_pause();
            return;
        }
        byte = (uint8_t)(UART0->dr & 0xFFu);
        cm_rx_ring_put(byte);
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

void board_rx_resume(void)
{
    /* Unmask, then drain what waits in the FIFO (interrupts are masked, so the ISR cannot run
     * in between); a byte arriving after the drain interrupts as usual. */
    UART0->im |= PL011_INT_RECEIVE;
    rx_drain();
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
