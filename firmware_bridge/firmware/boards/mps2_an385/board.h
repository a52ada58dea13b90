/* mps2-an385 board constants, used by the board's own HAL and vector table (never by the
 * portable firmware). The generic Cortex-M services (reset, faults, board_panic_write's
 * declaration) are in arch/cortex_m/cortex_m_rt.h. */
#ifndef PCL_MPS2_AN385_BOARD_H
#define PCL_MPS2_AN385_BOARD_H

/* Receive ring of hal_read_byte (arch/cortex_m/rx_ring.c), a power of two: 64 KiB holds several
 * maximal request frames (retries included) in the SSRAM. */
#define BOARD_RX_RING_BYTES 65536u

/* Main clock of the AN385 image: CPU, SysTick (processor clock source) and APB (UART PCLK). */
#define MPS2_SYSCLK_HZ 25000000u
/* Nominal line rate; QEMU ignores it, a real MPS2 routes UART0 to its USB-serial bridge. */
#define MPS2_UART0_BAUD 115200u
#define MPS2_UART0_BASE 0x40004000u
/* External interrupt numbers of UART0 in the AN385 image. */
#define MPS2_UART0_RX_IRQ 0u
#define MPS2_UART0_TX_IRQ 1u

#endif
