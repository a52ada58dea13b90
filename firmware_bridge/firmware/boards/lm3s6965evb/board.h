/* Stellaris LM3S6965 evaluation board constants (Cortex-M3, 256 KB flash, 64 KB SRAM), as on
 * the part (Stellaris LM3S6965 data sheet) and as QEMU's lm3s6965evb models it. Used by the
 * board's own HAL and vector table, never by the portable firmware. */
#ifndef PCL_LM3S6965EVB_BOARD_H
#define PCL_LM3S6965EVB_BOARD_H

/* Receive ring of hal_read_byte (arch/cortex_m/rx_ring.c), a power of two: 4 KiB holds two
 * maximal request frames (MAX_PAYLOAD_BYTES = 2 KiB in board.mk) of the 64 KB of SRAM the
 * weights, neuron state and frame buffers share. */
#define BOARD_RX_RING_BYTES 4096u

/* System clock: the PLL (400 MHz VCO, 200 MHz after its fixed /2) divided by SYSDIV + 1 = 4.
 * 50 MHz is the part's maximum. The HAL programs RCC to it at start-up; the reset clock differs
 * between silicon (an oscillator, undivided: USESYSDIV is clear) and QEMU (200 MHz / 16 =
 * 12.5 MHz: QEMU always applies SYSDIV), so a port that kept the reset clock would run its
 * tick at a different rate on each. SysTick runs on this clock (CLKSOURCE = processor clock;
 * QEMU does not model the part's alternative SysTick reference clock), and so does the UART. */
#define LM3S_SYSCLK_HZ 50000000u
#define LM3S_RCC_SYSDIV 3u      /* 200 MHz / (3 + 1) */
#define LM3S_RCC_XTAL_8MHZ 0xEu /* the EVB's main crystal */
/* Busy-loop passes after starting the main oscillator: >= 5 ms at up to 16 MHz (the internal
 * oscillator the part resets to is 12 MHz +- 30 %), 4 or more cycles a pass. */
#define LM3S_MOSC_SETTLE_LOOPS 20000u

/* System control block (0x400FE000). */
#define LM3S_SYSCTL_BASE 0x400FE000u
#define LM3S_SYSCTL_RIS_OFFSET 0x050u
#define LM3S_SYSCTL_MISC_OFFSET 0x058u
#define LM3S_SYSCTL_RCC_OFFSET 0x060u
#define LM3S_SYSCTL_RCC2_OFFSET 0x070u
#define LM3S_SYSCTL_RCGC1_OFFSET 0x104u
#define LM3S_SYSCTL_RCGC2_OFFSET 0x108u
#define LM3S_SYSCTL_RIS_PLLLRIS (1u << 6)
#define LM3S_RCC_MOSCDIS (1u << 0)
#define LM3S_RCC_OSCSRC_MASK (3u << 4) /* 0 = main oscillator */
#define LM3S_RCC_XTAL_SHIFT 6
#define LM3S_RCC_XTAL_MASK (0xFu << 6)
#define LM3S_RCC_BYPASS (1u << 11)
#define LM3S_RCC_PWRDN (1u << 13)
#define LM3S_RCC_USESYSDIV (1u << 22)
#define LM3S_RCC_SYSDIV_SHIFT 23
#define LM3S_RCC_SYSDIV_MASK (0xFu << 23)
#define LM3S_RCC2_USERCC2 (1u << 31)
#define LM3S_RCGC1_UART0 (1u << 0)
#define LM3S_RCGC2_GPIOA (1u << 0)

/* GPIO port A: PA0 = U0Rx, PA1 = U0Tx (alternate function, digital enable). */
#define LM3S_GPIOA_BASE 0x40004000u
#define LM3S_GPIO_AFSEL_OFFSET 0x420u
#define LM3S_GPIO_DEN_OFFSET 0x51Cu
#define LM3S_UART0_PINS ((1u << 0) | (1u << 1))

/* UART0: a PL011 (16-byte FIFOs) at 0x4000C000 on NVIC interrupt 5; the EVB routes it to its
 * USB-serial bridge at the nominal line rate below (QEMU ignores the rate). */
#define LM3S_UART0_BASE 0x4000C000u
#define LM3S_UART0_IRQ 5u
#define LM3S_UART0_BAUD 115200u

/* External interrupt lines of the NVIC (QEMU's model has 64; the part uses 0..43). */
#define LM3S_EXTERNAL_IRQS 64

#endif
