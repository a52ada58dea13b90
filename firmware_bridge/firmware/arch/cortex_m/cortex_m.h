/* The few ARMv7-M core registers the Cortex-M boards touch (ARMv7-M ARM, DDI0403), and the
 * instructions they need. They are the same on every Cortex-M3/M4/M7 (SysTick, NVIC and the
 * system control block are part of the core, not of the chip around it). No CMSIS: each
 * address is stated once here. A Cortex-M0 (ARMv6-M) has no CFSR, no CCR.DIV_0_TRP and no
 * IRQ priorities above 4 bits: it would need its own variant of this folder. */
#ifndef PCL_CORTEX_M_H
#define PCL_CORTEX_M_H

#include <stdint.h>

#define CM_REG(addr) (*(volatile uint32_t *)(addr))

/* SysTick: CSR bit0 enable, bit1 interrupt, bit2 clock = processor clock; 24-bit reload. */
#define CM_SYST_CSR CM_REG(0xE000E010u)
#define CM_SYST_RVR CM_REG(0xE000E014u)
#define CM_SYST_CVR CM_REG(0xE000E018u)
#define CM_SYST_CSR_ENABLE (1u << 0)
#define CM_SYST_CSR_TICKINT (1u << 1)
#define CM_SYST_CSR_CLKSOURCE (1u << 2)
#define CM_SYST_RELOAD_MAX 0x00FFFFFFu

/* NVIC set-enable for external interrupts 0..31 and 32..63. */
#define CM_NVIC_ISER0 CM_REG(0xE000E100u)
#define CM_NVIC_ISER1 CM_REG(0xE000E104u)

/* System control block. */
#define CM_SCB_VTOR CM_REG(0xE000ED08u)
#define CM_SCB_AIRCR CM_REG(0xE000ED0Cu)
#define CM_SCB_CCR CM_REG(0xE000ED14u)
#define CM_SCB_CFSR CM_REG(0xE000ED28u)
#define CM_SCB_HFSR CM_REG(0xE000ED2Cu)
#define CM_SCB_BFAR CM_REG(0xE000ED38u)
#define CM_AIRCR_VECTKEY (0x05FAu << 16)
#define CM_AIRCR_SYSRESETREQ (1u << 2)
#define CM_CCR_UNALIGN_TRP (1u << 3)
#define CM_CCR_DIV_0_TRP (1u << 4)

static inline void cm_disable_irq(void) { __asm volatile("cpsid i" ::: "memory"); }
static inline void cm_enable_irq(void) { __asm volatile("cpsie i" ::: "memory"); }
/* With PRIMASK set, a pending interrupt still ends WFI; it is taken after cm_enable_irq(). */
static inline void cm_wfi(void) { __asm volatile("wfi" ::: "memory"); }
static inline void cm_dsb(void) { __asm volatile("dsb" ::: "memory"); }

/* Enable external interrupt `irq` (0..63) in the NVIC. */
static inline void cm_nvic_enable(uint32_t irq)
{
    if (irq < 32u) {
        CM_NVIC_ISER0 = 1u << irq;
    } else {
        CM_NVIC_ISER1 = 1u << (irq - 32u);
    }
}

#endif
