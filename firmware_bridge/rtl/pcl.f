// The sources of pcl_core, in compile order. Read by firmware_bridge.rtl.sources.read_file_list
// (rtl/sim.py, tools/rtl_synth.py, the lint test) and by `verilator -F pcl.f`: one path per line,
// relative to this file; `-F other.f` reads another list. Headers: the generated pcl_*.vh.
pcl_lane.v
pcl_ram_sp.v
pcl_ram_sdp.v
pcl_mix32.v
pcl_learn.v
pcl_core.v
