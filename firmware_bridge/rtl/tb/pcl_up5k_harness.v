// Simulation harness for pcl_up5k_top (not for synthesis): the hardware half of the cocotb
// driver and monitor in firmware_bridge/rtl/tb/up5k_bench.py. The top is the one that is
// placed (tools/rtl_synth.py); its SPRAM is yosys's SB_SPRAM256KA model (ice40/cells_sim.v).
//
// go:       read +rx_hex (n_bytes bytes) into the source memory and stream it into the top's RX
//           port, at most one byte per cycle.
// tx_mem:   every byte the top sends, as {cycle, byte}, in order; tx_count of them so far.
// rx_count: bytes the top has taken; mark_cycle: the cycle its mark_bytes-th byte was taken.
// throttle: pseudo-random gaps on rx_valid and back-pressure on tx_ready.
// Bytes are opaque here: the packet layout is firmware_bridge/rtl/packets.py, used by the bench.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module pcl_up5k_harness (
    output reg         clk,
    input  wire        rst,
    input  wire        go,
    input  wire        throttle,
    input  wire [31:0] n_bytes,
    input  wire [31:0] mark_bytes,
    output reg  [31:0] rx_count,
    output reg  [31:0] tx_count,
    output reg  [31:0] mark_cycle,
    output reg  [31:0] cycle
);
`include "pcl_tb.vh"   // this harness's depths (firmware_bridge.rtl.up5k_sim)
    reg [7:0]  rx_mem [0:PCL_TB_RX_DEPTH-1];
    reg [39:0] tx_mem [0:PCL_TB_TX_DEPTH-1];
    reg [8*1024-1:0] rx_hex;
    // The clock is generated here, not by cocotb: no Python callback per edge.
    initial clk = 1'b0;
    always #5 clk = ~clk;
    initial if (!$value$plusargs("rx_hex=%s", rx_hex)) rx_hex = "rx.hex";

    reg running;
    reg [15:0] lfsr;
    wire rx_ready, tx_valid;
    wire [7:0] tx_data;
    wire rx_valid = running && (rx_count < n_bytes) && (!throttle || lfsr[0]);
    wire tx_ready = !throttle || lfsr[5];

    pcl_up5k_top u_top (
        .clk(clk), .rst(rst), .rx_data(rx_mem[rx_count]), .rx_valid(rx_valid), .rx_ready(rx_ready),
        .tx_data(tx_data), .tx_valid(tx_valid), .tx_ready(tx_ready));

    always @(posedge clk) begin
        cycle <= cycle + 32'd1;
        lfsr <= {lfsr[14:0], lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]};
        if (go) begin
            $readmemh(rx_hex, rx_mem, 0, n_bytes - 1);
            rx_count <= 32'd0;
            running <= 1'b1;
        end else if (rx_valid && rx_ready) begin
            rx_count <= rx_count + 32'd1;
            if (rx_count + 32'd1 == mark_bytes) mark_cycle <= cycle;
        end
        if (tx_valid && tx_ready) begin
            tx_mem[tx_count] <= {cycle, tx_data};
            tx_count <= tx_count + 32'd1;
        end
        if (rst) begin
            running <= 1'b0;
            rx_count <= 32'd0;
            tx_count <= 32'd0;
            mark_cycle <= 32'd0;
            cycle <= 32'd0;
            lfsr <= 16'hACE1;
        end
    end
endmodule

`resetall
