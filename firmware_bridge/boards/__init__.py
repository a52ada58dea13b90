"""Bodies that speak the wire: the firmware built per spec (``build``), the host board on a
pseudo-terminal (``host``), QEMU Cortex-M boards (``qemu``), ``launch.start_virtual_board`` to
start either, a protocol-agnostic fault-injection proxy (``faults``) and the host side of the
board bring-up self-test (``selftest_link``). May import ``firmware_bridge.wire`` and
``firmware_bridge.errors``, and ``popcount_learn``; nothing above (check, commands, cli)."""
