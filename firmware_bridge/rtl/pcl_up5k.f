// The iCE40 UP5K target: pcl_core (pcl.f) + SPRAM weights + byte-wide packets, top pcl_up5k_top.
// SB_SPRAM256KA is not listed: yosys knows the cell; simulation and lint add yosys's
// ice40/cells_sim.v (firmware_bridge.rtl.sources.ice40_cells_sim).
-F pcl.f
pcl_spram_up5k.v
pcl_byte_bridge.v
pcl_up5k_top.v
