// Simulation harness for pcl_core (not for synthesis): the hardware half of the cocotb
// driver and monitor in firmware_bridge/rtl/tb/core_bench.py.
//
// go_load: read +load_hex into the source memory and stream n_beats beats into the weight-load
//          port; done rises when the last beat was accepted.
// go_run:  read +in_hex (input-spike beats of n_images images) and stream them into the core;
//          every spike and result beat is recorded; when the n_images-th result arrives the
//          records are written to +sp_hex / +res_hex and done rises.
// throttle: pseudo-random gaps on in_valid and back-pressure on sp_ready / res_ready.
// Record layouts: RtlLayout.spike_fields() / result_fields() in firmware_bridge/rtl/params.py.
// The core may be a learning build (pcl_learning.vh binds its rule): it gets inference requests only.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module pcl_tb_harness (
    output reg         clk,
    input  wire        rst,
    input  wire        go_load,
    input  wire        go_run,
    input  wire        throttle,
    input  wire [31:0] n_beats,
    input  wire [31:0] n_images,
    output reg         done,
    output reg  [31:0] n_spikes,
    output reg  [31:0] n_results
);
`include "pcl_datapath.vh"
`include "pcl_learning.vh"
`include "pcl_topology.vh"
`include "pcl_tb.vh"
    localparam integer LOAD_W = 1 + PCL_WADDR_BITS + PCL_WL_BITS;
    localparam integer IN_W = 1 + PCL_STEP_BITS + PCL_IN_INDEX_BITS;
    localparam integer SP_W = PCL_TB_IMAGE_BITS + PCL_LAYER_BITS + PCL_NEURON_BITS + PCL_STEP_BITS;
    localparam integer RES_W = PCL_TB_CYCLE_BITS + 3 + PCL_NEURON_BITS + PCL_STEP_BITS
                             + PCL_N_LAYERS * PCL_ROWCOUNT_BITS;
    localparam integer SRC_W = LOAD_W > IN_W ? LOAD_W : IN_W;

    reg [SRC_W-1:0] src_mem [0:PCL_TB_SRC_DEPTH-1];
    reg [SP_W-1:0]  sp_mem  [0:PCL_TB_SP_DEPTH-1];
    reg [RES_W-1:0] res_mem [0:PCL_TB_RES_DEPTH-1];
    reg [8*1024-1:0] load_hex, in_hex, sp_hex, res_hex;
    // The clock is generated here, not by cocotb: a simulator-side clock costs no Python
    // callback per edge, which makes the whole simulation several times faster.
    initial clk = 1'b0;
    always #5 clk = ~clk;
    initial begin
        if (!$value$plusargs("load_hex=%s", load_hex)) load_hex = "load.hex";
        if (!$value$plusargs("in_hex=%s", in_hex)) in_hex = "in.hex";
        if (!$value$plusargs("sp_hex=%s", sp_hex)) sp_hex = "sp.hex";
        if (!$value$plusargs("res_hex=%s", res_hex)) res_hex = "res.hex";
    end

    reg loading, running, first_beat, dump;
    reg [31:0] ptr, cycle, img_start;
    reg [15:0] lfsr;
    wire [SRC_W-1:0] beat = src_mem[ptr];
    wire have_beat = ptr < n_beats;
    wire [PCL_TB_CYCLE_BITS-1:0] img_cycles = cycle - img_start + 32'd1;

    // ---- core and its weight RAM
    wire wl_ready, wmem_en, wmem_we;
    wire [PCL_WADDR_BITS-1:0] wmem_addr;
    wire [PCL_WORD_BITS-1:0] wmem_wdata, wmem_rdata;
    wire in_ready, sp_valid, res_valid;
    wire [PCL_LAYER_BITS-1:0] sp_layer;
    wire [PCL_NEURON_BITS-1:0] sp_index, res_class;
    wire [PCL_STEP_BITS-1:0] sp_step, res_step;
    wire res_decided, res_tie, res_input_error;
    wire [PCL_N_LAYERS*PCL_ROWCOUNT_BITS-1:0] res_rows_read;
    wire wl_valid = loading && have_beat;
    wire in_valid = running && have_beat && (!throttle || lfsr[0]);
    wire sp_ready = !throttle || lfsr[3];
    wire res_ready = !throttle || lfsr[7];

    pcl_ram_sp #(.WIDTH(PCL_WORD_BITS), .DEPTH(PCL_WEIGHT_WORDS), .ADDR_BITS(PCL_WADDR_BITS)) u_wram (
        .clk(clk), .en(wmem_en), .we(wmem_we), .addr(wmem_addr), .wdata(wmem_wdata), .rdata(wmem_rdata));

    pcl_core #(
`include "pcl_core_params.vh"
    ) u_core (
        .clk(clk), .rst(rst),
        .wl_valid(wl_valid), .wl_ready(wl_ready),
        .wl_threshold(beat[PCL_WADDR_BITS + PCL_WL_BITS]),
        .wl_addr(beat[PCL_WL_BITS +: PCL_WADDR_BITS]), .wl_data(beat[PCL_WL_BITS-1:0]),
        .wmem_en(wmem_en), .wmem_we(wmem_we), .wmem_addr(wmem_addr), .wmem_wdata(wmem_wdata),
        .wmem_rdata(wmem_rdata),
        .in_valid(in_valid), .in_ready(in_ready), .in_index(beat[PCL_IN_INDEX_BITS-1:0]),
        .in_step(beat[PCL_IN_INDEX_BITS +: PCL_STEP_BITS]), .in_last(beat[PCL_IN_INDEX_BITS + PCL_STEP_BITS]),
        .sp_valid(sp_valid), .sp_ready(sp_ready), .sp_layer(sp_layer), .sp_index(sp_index), .sp_step(sp_step),
        .res_valid(res_valid), .res_ready(res_ready), .res_decided(res_decided), .res_class(res_class),
        .res_step(res_step), .res_tie(res_tie), .res_rows_read(res_rows_read),
        .res_input_error(res_input_error),
        // an inference harness: no training requests, no read-back (outputs left open)
        .tc_valid(1'b0), .tc_ready(), .tc_label({PCL_NEURON_BITS{1'b0}}), .tc_index(32'd0),
        .rdq_valid(1'b0), .rdq_ready(), .rd_valid(), .rd_ready(1'b1), .rd_data(), .rd_last(),
        .res_trained(), .res_weights_changed(), .res_neurons_with_delta());

    always @(posedge clk) begin
        cycle <= cycle + 1;
        lfsr <= {lfsr[14:0], lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]};
        if (go_load) begin
            $readmemh(load_hex, src_mem, 0, n_beats - 1);
            ptr <= 0;
            loading <= 1'b1;
            done <= 1'b0;
        end else if (go_run) begin
            $readmemh(in_hex, src_mem, 0, n_beats - 1);
            ptr <= 0;
            running <= 1'b1;
            done <= 1'b0;
            first_beat <= 1'b1;
            n_spikes <= 0;
            n_results <= 0;
        end else begin
            if (loading && wl_valid && wl_ready) begin
                ptr <= ptr + 1;
                if (ptr + 1 == n_beats) begin
                    loading <= 1'b0;
                    done <= 1'b1;
                end
            end
            if (in_valid && in_ready) begin
                ptr <= ptr + 1;
                if (first_beat) img_start <= cycle;
                first_beat <= 1'b0;
            end
            if (sp_valid && sp_ready) begin
                sp_mem[n_spikes] <= {n_results[PCL_TB_IMAGE_BITS-1:0], sp_layer, sp_index, sp_step};
                n_spikes <= n_spikes + 1;
            end
            if (running && res_valid && res_ready) begin
                res_mem[n_results] <= {img_cycles, res_input_error, res_tie, res_decided,
                                       res_class, res_step, res_rows_read};
                n_results <= n_results + 1;
                first_beat <= 1'b1;
                if (n_results + 1 == n_images) running <= 1'b0;
            end
        end
        // The records are written one cycle after the last result landed in res_mem.
        dump <= running && res_valid && res_ready && (n_results + 1 == n_images);
        if (dump) begin
            if (n_spikes != 0) $writememh(sp_hex, sp_mem, 0, n_spikes - 1);
            $writememh(res_hex, res_mem, 0, n_results - 1);
            done <= 1'b1;
        end
        if (rst) begin
            dump <= 1'b0;
            loading <= 1'b0;
            running <= 1'b0;
            done <= 1'b0;
            ptr <= 0;
            cycle <= 0;
            n_spikes <= 0;
            n_results <= 0;
            lfsr <= 16'hACE1;
        end
    end

endmodule

`resetall
