/* The few Cortex-M3 core registers this port touches (ARMv7-M ARM, DDI0403), and the two
 * instructions it needs. No CMSIS: each address is stated once here. */
#ifndef PCL_CORTEX_M3_H
#define PCL_CORTEX_M3_H

#include <stdint.h>

#define M3_REG(addr) (*(volatile uint32_t *)(addr))

/* SysTick: CSR bit0 enable, bit1 interrupt, bit2 clock = processor clock; 24-bit reload. */
#define M3_SYST_CSR M3_REG(0xE000E010u)
#define M3_SYST_RVR M3_REG(0xE000E014u)
#define M3_SYST_CVR M3_REG(0xE000E018u)
#define M3_SYST_CSR_ENABLE (1u << 0)
#define M3_SYST_CSR_TICKINT (1u << 1)
#define M3_SYST_CSR_CLKSOURCE (1u << 2)

/* NVIC set-enable for external interrupts 0..31. */
#define M3_NVIC_ISER0 M3_REG(0xE000E100u)

/* System control block. */
#define M3_SCB_VTOR M3_REG(0xE000ED08u)
#define M3_SCB_AIRCR M3_REG(0xE000ED0Cu)
#define M3_SCB_CCR M3_REG(0xE000ED14u)
#define M3_SCB_CFSR M3_REG(0xE000ED28u)
#define M3_SCB_HFSR M3_REG(0xE000ED2Cu)
#define M3_SCB_BFAR M3_REG(0xE000ED38u)
#define M3_AIRCR_VECTKEY (0x05FAu << 16)
#define M3_AIRCR_SYSRESETREQ (1u << 2)
#define M3_CCR_UNALIGN_TRP (1u << 3)
#define M3_CCR_DIV_0_TRP (1u << 4)

static inline void m3_disable_irq(void) { __asm volatile("cpsid i" ::: "memory"); }
static inline void m3_enable_irq(void) { __asm volatile("cpsie i" ::: "memory"); }
/* With PRIMASK set, a pending interrupt still ends WFI; it is taken after m3_enable_irq(). */
static inline void m3_wfi(void) { __asm volatile("wfi" ::: "memory"); }
static inline void m3_dsb(void) { __asm volatile("dsb" ::: "memory"); }

#endif
