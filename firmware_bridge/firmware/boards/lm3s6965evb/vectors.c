/* Vector table of the LM3S6965: the core's 16 entries, then the NVIC's 64 external interrupt
 * lines (the part uses 0..43: GPIO A-E 0..4, UART0 5, UART1 6, ...). Only UART0 (IRQ 5) is
 * used; everything else reports as an unexpected exception. The linker script places the table
 * (section .vectors) at the start of flash, address 0, where the core fetches it at reset. */
#include <stdint.h>

#include "board.h"
#include "cortex_m_rt.h"

void uart0_handler(void);

__attribute__((section(".vectors"), used)) const cm_vector board_vector_table[16 + LM3S_EXTERNAL_IRQS] = {
    CM_CORE_VECTORS,
    [16 + 0] = cm_unexpected_exception, [16 + 1] = cm_unexpected_exception,
    [16 + 2] = cm_unexpected_exception, [16 + 3] = cm_unexpected_exception,
    [16 + 4] = cm_unexpected_exception, [16 + LM3S_UART0_IRQ] = uart0_handler,
    [16 + 6] = cm_unexpected_exception, [16 + 7] = cm_unexpected_exception,
    [16 + 8] = cm_unexpected_exception, [16 + 9] = cm_unexpected_exception,
    [16 + 10] = cm_unexpected_exception, [16 + 11] = cm_unexpected_exception,
    [16 + 12] = cm_unexpected_exception, [16 + 13] = cm_unexpected_exception,
    [16 + 14] = cm_unexpected_exception, [16 + 15] = cm_unexpected_exception,
    [16 + 16] = cm_unexpected_exception, [16 + 17] = cm_unexpected_exception,
    [16 + 18] = cm_unexpected_exception, [16 + 19] = cm_unexpected_exception,
    [16 + 20] = cm_unexpected_exception, [16 + 21] = cm_unexpected_exception,
    [16 + 22] = cm_unexpected_exception, [16 + 23] = cm_unexpected_exception,
    [16 + 24] = cm_unexpected_exception, [16 + 25] = cm_unexpected_exception,
    [16 + 26] = cm_unexpected_exception, [16 + 27] = cm_unexpected_exception,
    [16 + 28] = cm_unexpected_exception, [16 + 29] = cm_unexpected_exception,
    [16 + 30] = cm_unexpected_exception, [16 + 31] = cm_unexpected_exception,
    [16 + 32] = cm_unexpected_exception, [16 + 33] = cm_unexpected_exception,
    [16 + 34] = cm_unexpected_exception, [16 + 35] = cm_unexpected_exception,
    [16 + 36] = cm_unexpected_exception, [16 + 37] = cm_unexpected_exception,
    [16 + 38] = cm_unexpected_exception, [16 + 39] = cm_unexpected_exception,
    [16 + 40] = cm_unexpected_exception, [16 + 41] = cm_unexpected_exception,
    [16 + 42] = cm_unexpected_exception, [16 + 43] = cm_unexpected_exception,
    [16 + 44] = cm_unexpected_exception, [16 + 45] = cm_unexpected_exception,
    [16 + 46] = cm_unexpected_exception, [16 + 47] = cm_unexpected_exception,
    [16 + 48] = cm_unexpected_exception, [16 + 49] = cm_unexpected_exception,
    [16 + 50] = cm_unexpected_exception, [16 + 51] = cm_unexpected_exception,
    [16 + 52] = cm_unexpected_exception, [16 + 53] = cm_unexpected_exception,
    [16 + 54] = cm_unexpected_exception, [16 + 55] = cm_unexpected_exception,
    [16 + 56] = cm_unexpected_exception, [16 + 57] = cm_unexpected_exception,
    [16 + 58] = cm_unexpected_exception, [16 + 59] = cm_unexpected_exception,
    [16 + 60] = cm_unexpected_exception, [16 + 61] = cm_unexpected_exception,
    [16 + 62] = cm_unexpected_exception, [16 + 63] = cm_unexpected_exception,
};
