# Board: Texas Instruments (Luminary Micro) Stellaris LM3S6965 evaluation board, Cortex-M3 at
# 50 MHz, 256 KB flash, 64 KB SRAM, UART0 a PL011; real or as QEMU's lm3s6965evb. Included by
# the firmware Makefile (BOARD=lm3s6965evb); paths are relative to firmware_bridge/firmware,
# BOARD_DIR is this folder. The generic Cortex-M part comes from arch/cortex_m/arch.mk.
#
# Memory: everything in the 64 KB of SRAM (lm3s6965evb.ld), sized for 784-N-10 int8 images
# with the learning rule up to N = 51 (40,635 upload bytes; 784-32-10 takes 25,530):
#   weight memory 40 KiB + neuron state 64 x 25 B + frame buffers ~2 x 2 KiB + receive ring
#   4 KiB + the handler's other state = 51,032 B, + the graded inputs' step order of pcl_infer.c
#   (2 x (MAX_PAYLOAD_BYTES / 2 + 1) + 2 x (MAX_STEPS + 1) = 3,076 B at 512 steps), leaving
#   11.5 KB for the stack (the link fails below 4 KiB).
BOARD_NAME := lm3s6965evb
TARGET := pcl-board.elf
# The QEMU machine that models this board (qemu-system-arm -M ...); firmware_bridge reads it.
QEMU_MACHINE := lm3s6965evb
WEIGHT_CAPACITY_BYTES := 40960
MAX_NEURONS := 64
MAX_LAYERS := 4
# Frames: 2 KiB holds an INFER_BATCH of 20 images each way and keeps the two frame buffers
# and the receive ring (two frames) small.
MAX_PAYLOAD_BYTES := 2048
# PCL_BIG_RAM bytes the self-test's MEM command writes and reads back: most of the SRAM.
SELFTEST_BIG_BYTES := 49152

include arch/cortex_m/arch.mk

BOARD_CFLAGS := -mcpu=cortex-m3 $(CM_CFLAGS) -I$(BOARD_DIR)
BOARD_LDFLAGS := -T $(BOARD_DIR)/lm3s6965evb.ld $(CM_LDFLAGS)
HAL_SRCS := $(BOARD_DIR)/vectors.c $(BOARD_DIR)/hal_lm3s6965evb.c $(BOARD_DIR)/pl011_uart.c $(CM_SRCS)
