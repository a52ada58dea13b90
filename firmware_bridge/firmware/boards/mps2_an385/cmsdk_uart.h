/* ARM CMSDK APB UART (as in the Cortex-M System Design Kit TRM, DDI0479): a one-byte TX and a
 * one-byte RX buffer, no FIFO, 8N1, baud = PCLK / BAUDDIV with BAUDDIV >= 16.
 *
 * Register block (32-bit registers, byte offsets):
 *   0x00 DATA       write: byte to send; read: received byte (clears STATE.RXFULL)
 *   0x04 STATE      bit0 TXFULL, bit1 RXFULL, bit2 TX overrun (W1C), bit3 RX overrun (W1C)
 *   0x08 CTRL       bit0 TX enable, bit1 RX enable, bit2 TX int enable, bit3 RX int enable
 *   0x0C INTSTATUS  read: bit0 TX, bit1 RX, bit2 TX overrun, bit3 RX overrun; write 1 to clear
 *   0x10 BAUDDIV    20-bit divider
 */
#ifndef PCL_CMSDK_UART_H
#define PCL_CMSDK_UART_H

#include <stdint.h>

typedef struct {
    volatile uint32_t data;
    volatile uint32_t state;
    volatile uint32_t ctrl;
    volatile uint32_t intstatus;
    volatile uint32_t bauddiv;
} cmsdk_uart_regs;

#define CMSDK_UART_STATE_TXFULL (1u << 0)
#define CMSDK_UART_STATE_RXFULL (1u << 1)
#define CMSDK_UART_STATE_TXOVR (1u << 2)
#define CMSDK_UART_STATE_RXOVR (1u << 3)

#define CMSDK_UART_CTRL_TXEN (1u << 0)
#define CMSDK_UART_CTRL_RXEN (1u << 1)
#define CMSDK_UART_CTRL_TXINTEN (1u << 2)
#define CMSDK_UART_CTRL_RXINTEN (1u << 3)

#define CMSDK_UART_INT_TX (1u << 0)
#define CMSDK_UART_INT_RX (1u << 1)

/* Enable TX and RX at pclk_hz / baud (8N1) with the TX and RX interrupts enabled (they only wake
 * the core from WFI; the driver polls STATE), and discard any byte left in the RX buffer. */
void cmsdk_uart_init(cmsdk_uart_regs *uart, uint32_t pclk_hz, uint32_t baud);

/* 1 and the byte in *byte if one is waiting, else 0; never blocks. */
int cmsdk_uart_try_read(cmsdk_uart_regs *uart, uint8_t *byte);

/* 1 when the TX buffer can take a byte. */
int cmsdk_uart_tx_ready(const cmsdk_uart_regs *uart);

/* Put one byte in the TX buffer; call only when cmsdk_uart_tx_ready(). */
void cmsdk_uart_put(cmsdk_uart_regs *uart, uint8_t byte);

/* Acknowledge the TX and RX interrupts (write-one-to-clear); called from the UART ISRs. */
void cmsdk_uart_clear_interrupts(cmsdk_uart_regs *uart);

#endif
