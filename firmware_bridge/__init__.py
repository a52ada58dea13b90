"""Hardware side of popcount-learn: the datapath in Verilog (``rtl/``) and its Python drivers."""
