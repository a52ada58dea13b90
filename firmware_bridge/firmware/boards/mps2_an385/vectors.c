/* Vector table of the Cortex-M3 in the AN385 image: the core's 16 entries, then the 32
 * external interrupts the image wires to the NVIC. Only UART0 RX (IRQ 0) and TX (IRQ 1) are
 * used; everything else reports as an unexpected exception. The linker script places the
 * table (section .vectors) at address 0, where the core fetches it at reset. */
#include <stdint.h>

#include "board.h"
#include "cortex_m_rt.h"

void uart0_rx_handler(void);
void uart0_tx_handler(void);

#define AN385_EXTERNAL_IRQS 32

__attribute__((section(".vectors"), used)) const cm_vector board_vector_table[16 + AN385_EXTERNAL_IRQS] = {
    CM_CORE_VECTORS,
    [16 + MPS2_UART0_RX_IRQ] = uart0_rx_handler,
    [16 + MPS2_UART0_TX_IRQ] = uart0_tx_handler,
    [16 + 2] = cm_unexpected_exception, [16 + 3] = cm_unexpected_exception,
    [16 + 4] = cm_unexpected_exception, [16 + 5] = cm_unexpected_exception,
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
};
