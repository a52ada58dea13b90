/* The Cortex-M runtime (runtime.c) and what it needs from a board: the whole interface
 * between arch/cortex_m/ and a boards/<name>/ folder.
 *
 * The runtime provides the reset handler (C runtime set-up, then main()), the fault entry
 * and report, the handler for exceptions nobody expects, and a system reset; systick.c the millisecond clock; rx_ring.c
 * the receive side of the HAL. The board provides:
 *   - board_vector_table: its vector table, in section ".vectors" (the linker script puts it
 *     where the core fetches it at reset); entries 0..15 are CM_CORE_VECTORS, then
 *     its own IRQ handlers, every unused IRQ pointing at cm_unexpected_exception;
 *   - board_panic_write(): a polled UART write, callable with interrupts masked (faults);
 *   - board_rx_resume() and, in board.h, BOARD_RX_RING_BYTES (rx_ring.c);
 *   - a linker script defining the section symbols below and a NOLOAD ".bigram" output
 *     section that receives every PCL_BIG_RAM array (arch.mk defines PCL_BIG_RAM so).
 */
#ifndef PCL_CORTEX_M_RT_H
#define PCL_CORTEX_M_RT_H

#include <stdint.h>

typedef void (*cm_vector)(void);

/* Defined by the board's linker script (word-aligned bounds). */
extern uint32_t __data_start[];      /* .data in RAM ... */
extern uint32_t __data_end[];
extern const uint32_t __data_load[]; /* ... and its load image in ROM/flash */
extern uint32_t __bss_start[];
extern uint32_t __bss_end[];
extern uint32_t __bigram_start[];    /* PCL_BIG_RAM arrays: zeroed at reset like .bss */
extern uint32_t __bigram_end[];
extern uint32_t __stack_top[];       /* initial main stack pointer (8-byte aligned) */

/* Provided by systick.c: hal_millis() on SysTick at CM_TICK_HZ. cm_tick_start() (from the
 * board's hal_init) returns 0 when the clock does not suit SysTick's 24-bit reload. */
#define CM_TICK_HZ 100u
int cm_tick_start(uint32_t core_clock_hz);
void cm_systick_handler(void);

/* Provided by rx_ring.c: hal_read_byte() over a ring the board's UART interrupt fills. The ISR
 * puts bytes while there is room; when the ring is full it masks its receive interrupt and
 * pauses the ring; board_rx_resume() (interrupts masked) unmasks and drains once there is room. */
int cm_rx_ring_has_room(void);
void cm_rx_ring_put(uint8_t byte);
void cm_rx_ring_pause(void);
void board_rx_resume(void);

/* Provided by runtime.c. */
void cm_reset_handler(void);
void cm_fault_entry(void);          /* NMI, HardFault, MemManage, BusFault, UsageFault */
void cm_unexpected_exception(void); /* any exception or IRQ the board does not handle */
void cm_system_reset(void);         /* AIRCR.SYSRESETREQ; does not return */

/* Provided by the board. */
extern const cm_vector board_vector_table[];
void board_panic_write(const char *text);

/* Entries 0..15 of an ARMv7-M vector table: initial stack pointer, reset, the five fault
 * exceptions, reserved/SVCall/DebugMonitor/PendSV (unexpected here), SysTick (the clock of
 * systick.c). A board writes `{ CM_CORE_VECTORS, [16 + n] = ..., ... }`. */
#define CM_CORE_VECTORS                                                                       \
    (cm_vector)(uintptr_t)__stack_top, cm_reset_handler,                                      \
        cm_fault_entry,          /* 2 NMI */                                                  \
        cm_fault_entry,          /* 3 HardFault */                                            \
        cm_fault_entry,          /* 4 MemManage */                                            \
        cm_fault_entry,          /* 5 BusFault */                                             \
        cm_fault_entry,          /* 6 UsageFault */                                           \
        cm_unexpected_exception, /* 7 reserved */                                             \
        cm_unexpected_exception, /* 8 reserved */                                             \
        cm_unexpected_exception, /* 9 reserved */                                             \
        cm_unexpected_exception, /* 10 reserved */                                            \
        cm_unexpected_exception, /* 11 SVCall */                                              \
        cm_unexpected_exception, /* 12 DebugMonitor */                                        \
        cm_unexpected_exception, /* 13 reserved */                                            \
        cm_unexpected_exception, /* 14 PendSV */                                              \
        cm_systick_handler       /* 15 SysTick */

#endif
