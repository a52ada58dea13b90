#include "cmsdk_uart.h"

void cmsdk_uart_init(cmsdk_uart_regs *uart, uint32_t pclk_hz, uint32_t baud)
{
    uint32_t div = pclk_hz / baud;
    if (div < 16u) {
        div = 16u;
    }
    uart->ctrl = 0u;
    uart->bauddiv = div;
    uart->state = CMSDK_UART_STATE_TXOVR | CMSDK_UART_STATE_RXOVR;
    uart->intstatus = 0xFu;
    uart->ctrl = CMSDK_UART_CTRL_TXEN | CMSDK_UART_CTRL_RXEN | CMSDK_UART_CTRL_TXINTEN |
                 CMSDK_UART_CTRL_RXINTEN;
    /* An empty RX buffer must be read once after RX is enabled: QEMU's model only asks its
     * character backend for the next byte after a DATA read, so without this the first byte
     * from the host waits for the backend's ~1 s poll. On silicon it discards line noise. */
    (void)uart->data;
}

int cmsdk_uart_try_read(cmsdk_uart_regs *uart, uint8_t *byte)
{
    if ((uart->state & CMSDK_UART_STATE_RXFULL) == 0u) {
        return 0;
    }
    *byte = (uint8_t)(uart->data & 0xFFu);
    return 1;
}

int cmsdk_uart_tx_ready(const cmsdk_uart_regs *uart)
{
    return (uart->state & CMSDK_UART_STATE_TXFULL) == 0u;
}

void cmsdk_uart_put(cmsdk_uart_regs *uart, uint8_t byte)
{
    uart->data = byte;
}

void cmsdk_uart_clear_interrupts(cmsdk_uart_regs *uart)
{
    uart->intstatus = CMSDK_UART_INT_TX | CMSDK_UART_INT_RX;
}
