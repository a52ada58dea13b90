# Shared by every Cortex-M (ARMv7-M) board: included from boards/<name>/board.mk, paths
# relative to firmware_bridge/firmware. Sets CC and the CM_* variables a board builds its
# BOARD_CFLAGS / BOARD_LDFLAGS / HAL_SRCS from, and the self-test source (make selftest).
#
# Needs arm-none-eabi-gcc; no C library is linked (libc_min.c provides what GCC may call),
# only libgcc for the helpers it emits.
CM_DIR := arch/cortex_m
CROSS_COMPILE ?= arm-none-eabi-
CC := $(CROSS_COMPILE)gcc

# -ffreestanding: no hosted library; -fno-tree-loop-distribute-patterns: keep copy/zero loops as
# loops (else GCC calls memset from inside memset and the runtime's start-up code);
# -mno-unaligned-access: the runtime traps unaligned accesses (CCR.UNALIGN_TRP, set at reset).
# Every PCL_BIG_RAM array goes to section .bigram, which each board's linker script places.
# The board adds its -mcpu (and -I$(BOARD_DIR)).
CM_CFLAGS := -mthumb -mfloat-abi=soft -O2 -g -ffreestanding -fno-tree-loop-distribute-patterns \
    -mno-unaligned-access -ffunction-sections -fdata-sections \
    -I$(CM_DIR) '-DPCL_BIG_RAM=__attribute__((section(".bigram")))'
# The board puts its -T <linker script> first; -lgcc must stay last.
CM_LDFLAGS := -nostdlib -nostartfiles -Wl,--gc-sections -Wl,--no-warn-rwx-segments -lgcc
# Reset/fault runtime, the SysTick millisecond clock, the interrupt-fed receive ring of
# hal_read_byte and the few C library functions GCC calls;
# a board adds its own files.
CM_SRCS := $(CM_DIR)/runtime.c $(CM_DIR)/systick.c $(CM_DIR)/rx_ring.c $(CM_DIR)/libc_min.c
# One bring-up self-test for every Cortex-M board (over the board's HAL_SRCS).
SELFTEST_SRCS := $(CM_DIR)/selftest.c
