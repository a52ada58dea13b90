# Board: ARM MPS2 with the AN385 FPGA image (Cortex-M3), real or as QEMU's mps2-an385.
# Included by the firmware Makefile (BOARD=mps2_an385) and by selftest.mk; paths are relative
# to firmware_bridge/firmware. Needs arm-none-eabi-gcc; no C library is linked (libc_min.c
# provides what GCC may call), only libgcc for the helpers it emits (64-bit division).
#
# Memory: code in SSRAM1 (4 MiB), stack/.data/.bss in SSRAM2/3 (4 MiB), every PCL_BIG_RAM
# array (weight memory, neuron state, frame buffers) in PSRAM (16 MiB), see mps2_an385.ld.
# The Makefile's default sizes (1 MiB of weights, 2048 neurons) fit with room to spare.
#
# Frames: at the ~20 kB/s a UART (or QEMU's) carries, a 64 KiB frame takes seconds and a lost
# one costs that again; 8 KiB frames keep a retry cheap and the two frame buffers small.
MAX_PAYLOAD_BYTES := 8192

MPS2_AN385_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

CROSS_COMPILE ?= arm-none-eabi-
CC := $(CROSS_COMPILE)gcc
BOARD_NAME := mps2_an385
TARGET := pcl-board.elf

BOARD_ARCH_FLAGS := -mcpu=cortex-m3 -mthumb -mfloat-abi=soft
# -ffreestanding: no hosted library; -fno-tree-loop-distribute-patterns: keep copy/zero loops as
# loops (else GCC calls memset from inside memset and the startup code);
# -mno-unaligned-access: the core traps unaligned accesses (CCR.UNALIGN_TRP, set at reset).
BOARD_CFLAGS := $(BOARD_ARCH_FLAGS) -O2 -g -ffreestanding -fno-tree-loop-distribute-patterns \
    -mno-unaligned-access -ffunction-sections -fdata-sections \
    -I$(MPS2_AN385_DIR) '-DPCL_BIG_RAM=__attribute__((section(".bigram")))'
BOARD_LDFLAGS := -nostdlib -nostartfiles -T $(MPS2_AN385_DIR)/mps2_an385.ld -Wl,--gc-sections \
    -Wl,--no-warn-rwx-segments -lgcc
HAL_SRCS := $(MPS2_AN385_DIR)/startup.c $(MPS2_AN385_DIR)/hal_mps2_an385.c \
    $(MPS2_AN385_DIR)/cmsdk_uart.c $(MPS2_AN385_DIR)/libc_min.c
