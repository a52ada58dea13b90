/* Reset and exception entry for the Cortex-M3 on mps2-an385: vector table, C runtime set-up
 * (.data copied from its load image, .bss and .bigram zeroed), fault reports on UART0.
 *
 * The loops below must stay loops: this file is built with -fno-tree-loop-distribute-patterns
 * so that GCC does not turn them into calls to memcpy/memset before those exist.
 */
#include <stdint.h>

#include "board.h"
#include "cortex_m3.h"

extern uint32_t __data_start[];
extern uint32_t __data_end[];
extern const uint32_t __data_load[];
extern uint32_t __bss_start[];
extern uint32_t __bss_end[];
extern uint32_t __stack_top[];

int main(void);
void reset_handler(void);
void systick_handler(void);
void uart0_rx_handler(void);
void uart0_tx_handler(void);
void unexpected_exception_handler(void);
void fault_entry(void);
void fault_report(const uint32_t *frame, uint32_t exc_return);

typedef void (*vector_entry)(void);

#define AN385_EXTERNAL_IRQS 32

/* Word 0 is the initial main stack pointer, then the 15 system exceptions, then IRQ 0..31. */
__attribute__((section(".vectors"), used)) const vector_entry vector_table[16 + AN385_EXTERNAL_IRQS] = {
    [0] = (vector_entry)(uintptr_t)__stack_top,
    [1] = reset_handler,
    [2] = fault_entry,  /* NMI */
    [3] = fault_entry,  /* HardFault */
    [4] = fault_entry,  /* MemManage */
    [5] = fault_entry,  /* BusFault */
    [6] = fault_entry,  /* UsageFault */
    [7] = unexpected_exception_handler,
    [8] = unexpected_exception_handler,
    [9] = unexpected_exception_handler,
    [10] = unexpected_exception_handler,
    [11] = unexpected_exception_handler, /* SVCall */
    [12] = unexpected_exception_handler, /* DebugMonitor */
    [13] = unexpected_exception_handler,
    [14] = unexpected_exception_handler, /* PendSV */
    [15] = systick_handler,
    [16 + 0] = uart0_rx_handler,
    [16 + 1] = uart0_tx_handler,
    [16 + 2] = unexpected_exception_handler, [16 + 3] = unexpected_exception_handler,
    [16 + 4] = unexpected_exception_handler, [16 + 5] = unexpected_exception_handler,
    [16 + 6] = unexpected_exception_handler, [16 + 7] = unexpected_exception_handler,
    [16 + 8] = unexpected_exception_handler, [16 + 9] = unexpected_exception_handler,
    [16 + 10] = unexpected_exception_handler, [16 + 11] = unexpected_exception_handler,
    [16 + 12] = unexpected_exception_handler, [16 + 13] = unexpected_exception_handler,
    [16 + 14] = unexpected_exception_handler, [16 + 15] = unexpected_exception_handler,
    [16 + 16] = unexpected_exception_handler, [16 + 17] = unexpected_exception_handler,
    [16 + 18] = unexpected_exception_handler, [16 + 19] = unexpected_exception_handler,
    [16 + 20] = unexpected_exception_handler, [16 + 21] = unexpected_exception_handler,
    [16 + 22] = unexpected_exception_handler, [16 + 23] = unexpected_exception_handler,
    [16 + 24] = unexpected_exception_handler, [16 + 25] = unexpected_exception_handler,
    [16 + 26] = unexpected_exception_handler, [16 + 27] = unexpected_exception_handler,
    [16 + 28] = unexpected_exception_handler, [16 + 29] = unexpected_exception_handler,
    [16 + 30] = unexpected_exception_handler, [16 + 31] = unexpected_exception_handler,
};

void reset_handler(void)
{
    uint32_t *dst = __data_start;
    const uint32_t *src = __data_load;
    while (dst < __data_end) {
        *dst++ = *src++;
    }
    for (dst = __bss_start; dst < __bss_end; ++dst) {
        *dst = 0u;
    }
    /* PCL_BIG_RAM arrays are C statics: they start at zero like .bss. */
    for (dst = (uint32_t *)(void *)__bigram_start; dst < (uint32_t *)(void *)__bigram_end; ++dst) {
        *dst = 0u;
    }
    M3_SCB_VTOR = (uint32_t)(uintptr_t)vector_table;
    /* Trap what a smaller core (or the C standard) would not forgive: integer division by
     * zero and unaligned word accesses (the port is compiled with -mno-unaligned-access, so
     * only C-level misuse can produce one). */
    M3_SCB_CCR |= M3_CCR_DIV_0_TRP | M3_CCR_UNALIGN_TRP;
    m3_dsb();
    (void)main();
    board_panic_write("\r\n!PCL-FAULT main returned\r\n");
    for (;;) {
        m3_wfi();
    }
}

/* Entered with the stacked frame on MSP or PSP (EXC_RETURN bit 2 says which). */
__attribute__((naked)) void fault_entry(void)
{
    __asm volatile(
        "tst lr, #4\n"
        "ite eq\n"
        "mrseq r0, msp\n"
        "mrsne r0, psp\n"
        "mov r1, lr\n"
        "b fault_report\n");
}

static void append_hex32(char *out, uint32_t value)
{
    static const char digits[] = "0123456789abcdef";
    int i;
    for (i = 0; i < 8; ++i) {
        out[i] = digits[(value >> (28 - 4 * i)) & 0xFu];
    }
}

static void report_and_halt(const char *what, uint32_t pc)
{
    uint32_t ipsr;
    /* "!PCL-FAULT <what> ipsr=xxxxxxxx pc=xxxxxxxx cfsr=xxxxxxxx hfsr=xxxxxxxx bfar=xxxxxxxx" */
    char line[96];
    const char *fields[5] = {" ipsr=", " pc=", " cfsr=", " hfsr=", " bfar="};
    uint32_t values[5];
    uint32_t n = 0;
    int f;
    const char *p;

    __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
    values[0] = ipsr;
    values[1] = pc;
    values[2] = M3_SCB_CFSR;
    values[3] = M3_SCB_HFSR;
    values[4] = M3_SCB_BFAR;
    for (p = "\r\n!PCL-FAULT "; *p != '\0'; ++p) {
        line[n++] = *p;
    }
    for (p = what; *p != '\0' && n < 24u; ++p) {
        line[n++] = *p;
    }
    for (f = 0; f < 5; ++f) {
        for (p = fields[f]; *p != '\0'; ++p) {
            line[n++] = *p;
        }
        append_hex32(&line[n], values[f]);
        n += 8u;
    }
    line[n++] = '\r';
    line[n++] = '\n';
    line[n] = '\0';
    board_panic_write(line);
    /* Halt: the host sees silence after the report and times out with a typed error. */
    for (;;) {
        m3_disable_irq();
        m3_wfi();
    }
}

void fault_report(const uint32_t *frame, uint32_t exc_return)
{
    (void)exc_return;
    report_and_halt("fault", frame[6]);
}

void unexpected_exception_handler(void)
{
    report_and_halt("unexpected-exception", 0u);
}
