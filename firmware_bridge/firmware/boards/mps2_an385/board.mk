# Board: ARM MPS2 with the AN385 FPGA image (Cortex-M3), real or as QEMU's mps2-an385.
# Included by the firmware Makefile (BOARD=mps2_an385); paths are relative to
# firmware_bridge/firmware, BOARD_DIR is this folder. The generic Cortex-M part (runtime,
# fault reports, libc_min, self-test, compiler flags) comes from arch/cortex_m/arch.mk.
#
# Memory: code in SSRAM1 (4 MiB), stack/.data/.bss in SSRAM2/3 (4 MiB), every PCL_BIG_RAM
# array (weight memory, neuron state, frame buffers) in PSRAM (16 MiB), see mps2_an385.ld.
# The Makefile's default sizes (1 MiB of weights, 2048 neurons) fit with room to spare.
#
# Frames: at the ~20 kB/s a UART (or QEMU's) carries, a 64 KiB frame takes seconds and a lost
# one costs that again; 8 KiB frames keep a retry cheap and the two frame buffers small.
BOARD_NAME := mps2_an385
TARGET := pcl-board.elf
# The QEMU machine that models this board (qemu-system-arm -M ...); firmware_bridge reads it.
QEMU_MACHINE := mps2-an385
MAX_PAYLOAD_BYTES := 8192
# PCL_BIG_RAM bytes the self-test's MEM command writes and reads back (in PSRAM).
SELFTEST_BIG_BYTES := 524288

include arch/cortex_m/arch.mk

BOARD_CFLAGS := -mcpu=cortex-m3 $(CM_CFLAGS) -I$(BOARD_DIR)
BOARD_LDFLAGS := -T $(BOARD_DIR)/mps2_an385.ld $(CM_LDFLAGS)
HAL_SRCS := $(BOARD_DIR)/vectors.c $(BOARD_DIR)/hal_mps2_an385.c $(BOARD_DIR)/cmsdk_uart.c $(CM_SRCS)
