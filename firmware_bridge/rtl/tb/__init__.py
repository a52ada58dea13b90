"""Simulation only: the harness (``pcl_tb_harness.v``) and the cocotb testbench modules that run
inside the simulator (stimulus and monitor; the model and the checker run in the caller)."""
