#include "pl011_uart.h"

void pl011_init(pl011_regs *uart, uint32_t clock_hz, uint32_t baud)
{
    /* Divisor in 1/64 steps, rounded: 64 * clock / (16 * baud) = 4 * clock / baud. The sum
     * stays in 32 bits for any clock below ~1 GHz. */
    const uint32_t div64 = (4u * clock_hz + baud / 2u) / baud;
    uint8_t junk;

    uart->ctl = 0u; /* disabled while configured */
    uart->ibrd = div64 >> 6;
    uart->fbrd = div64 & 0x3Fu;
    uart->lcrh = PL011_LCRH_WLEN_8 | PL011_LCRH_FEN; /* latches IBRD/FBRD */
    uart->ifls = 0u; /* RX and TX interrupt at 1/8 of the FIFO */
    uart->rsr = 0u;  /* clear error flags */
    uart->icr = PL011_INT_ALL;
    uart->im = PL011_INT_RECEIVE;
    uart->ctl = PL011_CTL_UARTEN | PL011_CTL_TXE | PL011_CTL_RXE;
    while (pl011_try_read(uart, &junk)) {
    }
}
