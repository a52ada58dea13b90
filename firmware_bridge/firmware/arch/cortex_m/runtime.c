/* The Cortex-M (ARMv7-M) runtime shared by every Cortex-M board: C runtime set-up at reset
 * (.data copied from its load image, .bss and .bigram zeroed), fault reports on the board's
 * UART, and a system reset. The board supplies the vector table, the linker script and
 * board_panic_write() (cortex_m_rt.h).
 *
 * The loops below must stay loops: this file is built with -fno-tree-loop-distribute-patterns
 * so that GCC does not turn them into calls to memcpy/memset before those exist.
 */
#include <stdint.h>

#include "cortex_m.h"
#include "cortex_m_rt.h"

int main(void);
void cm_fault_report(const uint32_t *frame, uint32_t exc_return);

void cm_reset_handler(void)
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
    for (dst = __bigram_start; dst < __bigram_end; ++dst) {
        *dst = 0u;
    }
    CM_SCB_VTOR = (uint32_t)(uintptr_t)board_vector_table;
    /* Trap what a smaller core (or the C standard) would not forgive: integer division by
     * zero and unaligned word accesses (the boards are compiled with -mno-unaligned-access,
     * so only C-level misuse can produce one). */
    CM_SCB_CCR |= CM_CCR_DIV_0_TRP | CM_CCR_UNALIGN_TRP;
    cm_dsb();
    (void)main();
    board_panic_write("\r\n!PCL-FAULT main returned\r\n");
    for (;;) {
        cm_wfi();
    }
}

/* Entered with the stacked frame on MSP or PSP (EXC_RETURN bit 2 says which). */
__attribute__((naked)) void cm_fault_entry(void)
{
    __asm volatile(
        "tst lr, #4\n"
        "ite eq\n"
        "mrseq r0, msp\n"
        "mrsne r0, psp\n"
        "mov r1, lr\n"
        "b cm_fault_report\n");
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
    values[2] = CM_SCB_CFSR;
    values[3] = CM_SCB_HFSR;
    values[4] = CM_SCB_BFAR;
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
        cm_disable_irq();
        cm_wfi();
    }
}

void cm_fault_report(const uint32_t *frame, uint32_t exc_return)
{
    (void)exc_return;
    report_and_halt("fault", frame[6]);
}

void cm_unexpected_exception(void)
{
    report_and_halt("unexpected-exception", 0u);
}

void cm_system_reset(void)
{
    cm_dsb();
    CM_SCB_AIRCR = CM_AIRCR_VECTKEY | CM_AIRCR_SYSRESETREQ;
    cm_dsb();
    for (;;) {
        cm_wfi();
    }
}
