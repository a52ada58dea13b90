# Board: ARM MPS2 with the AN385 FPGA image (Cortex-M3), real or as QEMU's mps2-an385.
# Included by the firmware Makefile (BOARD=mps2_an385) and by selftest.mk; paths are relative
# to firmware_bridge/firmware. Needs arm-none-eabi-gcc; no C library is linked (libc_min.c
# provides what GCC may call), only libgcc for the helpers it emits (64-bit division).

MPS2_AN385_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

CROSS_COMPILE ?= arm-none-eabi-
CC := $(CROSS_COMPILE)gcc
OBJCOPY := $(CROSS_COMPILE)objcopy
SIZE := $(CROSS_COMPILE)size

BOARD_ARCH_FLAGS := -mcpu=cortex-m3 -mthumb -mfloat-abi=soft
# -ffreestanding: no hosted library; -fno-tree-loop-distribute-patterns: keep copy/zero loops as
# loops (else GCC calls memset from inside memset and the startup code);
# -mno-unaligned-access: the core traps unaligned accesses (CCR.UNALIGN_TRP, set at reset).
BOARD_CFLAGS := $(BOARD_ARCH_FLAGS) -O2 -g -ffreestanding -fno-tree-loop-distribute-patterns \
    -mno-unaligned-access -ffunction-sections -fdata-sections \
    -std=c99 -Wall -Wextra -Werror
BOARD_CPPFLAGS := -I$(MPS2_AN385_DIR) -DPCL_BOARD_MPS2_AN385=1 \
    '-DPCL_BIG_RAM=__attribute__((section(".bigram")))'
BOARD_LDFLAGS := $(BOARD_ARCH_FLAGS) -nostdlib -nostartfiles \
    -T $(MPS2_AN385_DIR)/mps2_an385.ld -Wl,--gc-sections -Wl,--no-warn-rwx-segments
BOARD_LDLIBS := -lgcc
BOARD_SRCS := $(MPS2_AN385_DIR)/startup.c $(MPS2_AN385_DIR)/hal_mps2_an385.c \
    $(MPS2_AN385_DIR)/cmsdk_uart.c $(MPS2_AN385_DIR)/libc_min.c
BOARD_OUTPUT_SUFFIX := .elf
