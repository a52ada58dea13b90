/* ARM PrimeCell PL011 UART as on the Stellaris parts (ARM DDI0183; the LM3S data sheet names
 * the registers UARTxxx): 16-byte TX and RX FIFOs, 8N1, baud = clock / (16 * (IBRD + FBRD/64)).
 *
 * Register block (32-bit registers, byte offsets):
 *   0x000 DR    write: byte to send; read: received byte (bits 8..11 its error flags)
 *   0x004 RSR   receive status / error clear
 *   0x018 FR    bit3 BUSY, bit4 RXFE, bit5 TXFF, bit6 RXFF, bit7 TXFE
 *   0x024 IBRD  integer baud divisor; 0x028 FBRD fractional (1/64); written before LCRH
 *   0x02C LCRH  bit4 FEN (FIFOs on), bits 5..6 WLEN (3 = 8 bits)
 *   0x030 CTL   bit0 UARTEN, bit8 TXE, bit9 RXE
 *   0x034 IFLS  FIFO interrupt levels; 0x038 IM mask; 0x03C RIS; 0x040 MIS; 0x044 ICR (W1C)
 *   interrupt bits: 4 RX (FIFO at its level), 5 TX, 6 RT (receive timeout: bytes waiting
 *   below the level, line idle for 32 bit times), 7..10 errors
 */
#ifndef PCL_PL011_UART_H
#define PCL_PL011_UART_H

#include <stdint.h>

typedef struct {
    volatile uint32_t dr;        /* 0x000 */
    volatile uint32_t rsr;       /* 0x004 */
    uint32_t reserved0[4];       /* 0x008..0x014 */
    volatile uint32_t fr;        /* 0x018 */
    uint32_t reserved1;          /* 0x01C */
    volatile uint32_t ilpr;      /* 0x020 */
    volatile uint32_t ibrd;      /* 0x024 */
    volatile uint32_t fbrd;      /* 0x028 */
    volatile uint32_t lcrh;      /* 0x02C */
    volatile uint32_t ctl;       /* 0x030 */
    volatile uint32_t ifls;      /* 0x034 */
    volatile uint32_t im;        /* 0x038 */
    volatile uint32_t ris;       /* 0x03C */
    volatile uint32_t mis;       /* 0x040 */
    volatile uint32_t icr;       /* 0x044 */
} pl011_regs;

#define PL011_FR_RXFE (1u << 4)
#define PL011_FR_TXFF (1u << 5)

#define PL011_LCRH_FEN (1u << 4)
#define PL011_LCRH_WLEN_8 (3u << 5)

#define PL011_CTL_UARTEN (1u << 0)
#define PL011_CTL_TXE (1u << 8)
#define PL011_CTL_RXE (1u << 9)

#define PL011_INT_RX (1u << 4)
#define PL011_INT_TX (1u << 5)
#define PL011_INT_RT (1u << 6)
#define PL011_INT_ALL 0x7FFu
/* What the receive path listens to: FIFO level and the timeout for a few bytes below it. */
#define PL011_INT_RECEIVE (PL011_INT_RX | PL011_INT_RT)

/* 8N1 with FIFOs at clock_hz / baud, every interrupt cleared, the receive interrupts (RX, RT)
 * unmasked, UART enabled; discards any byte left in the RX FIFO. */
void pl011_init(pl011_regs *uart, uint32_t clock_hz, uint32_t baud);

/* 1 and the byte in *byte if one is waiting, else 0; never blocks. */
static inline int pl011_try_read(pl011_regs *uart, uint8_t *byte)
{
    if ((uart->fr & PL011_FR_RXFE) != 0u) {
        return 0;
    }
    *byte = (uint8_t)(uart->dr & 0xFFu);
    return 1;
}

/* 1 when the TX FIFO can take a byte. */
static inline int pl011_tx_ready(const pl011_regs *uart)
{
    return (uart->fr & PL011_FR_TXFF) == 0u;
}

static inline void pl011_put(pl011_regs *uart, uint8_t byte)
{
    uart->dr = byte;
}

#endif
