/* mps2-an385 board services beyond the portable HAL (hal.h): used by the board's own startup
 * code and the bring-up self-test, never by the portable firmware. */
#ifndef PCL_MPS2_AN385_BOARD_H
#define PCL_MPS2_AN385_BOARD_H

#include <stdint.h>

/* Main clock of the AN385 image: CPU, SysTick (processor clock source) and APB (UART PCLK). */
#define MPS2_SYSCLK_HZ 25000000u
/* Nominal line rate; QEMU ignores it, a real MPS2 routes UART0 to its USB-serial bridge. */
#define MPS2_UART0_BAUD 115200u
#define MPS2_UART0_BASE 0x40004000u
/* External interrupt numbers of UART0 in the AN385 image. */
#define MPS2_UART0_RX_IRQ 0u
#define MPS2_UART0_TX_IRQ 1u

/* Request a system reset through AIRCR.SYSRESETREQ; does not return. */
void board_system_reset(void);

/* Send a line on UART0 by polling, usable with interrupts masked (fault reports). */
void board_panic_write(const char *text);

/* Bounds of the .bigram section (PSRAM) as placed by the linker script. */
extern uint8_t __bigram_start[];
extern uint8_t __bigram_end[];

#endif
