// iCE40 UP5K top: pcl_core with its weights in SPRAM (pcl_spram_up5k) behind byte-wide
// streams (pcl_byte_bridge): 22 I/O pins incl. clock and reset. Parameters from the generated
// headers (firmware_bridge.rtl.params.RtlLayout.write_headers). The byte packets are those of
// pcl_byte_bridge (firmware_bridge/rtl/packets.py); simulated as placed by tb/up5k_bench.py, with
// the SB_SPRAM256KA model of yosys's ice40/cells_sim.v. A learning build (PCL_LEARNING = 1:
// pcl_core with pcl_learn) takes training and read-back commands as RX packets of kind 3 and
// sends read-back words as TX packets of kind 2; its results carry the rule's counts.
`resetall
`default_nettype none

module pcl_up5k_top (
    input  wire       clk,
    input  wire       rst,
    input  wire [7:0] rx_data,
    input  wire       rx_valid,
    output wire       rx_ready,
    output wire [7:0] tx_data,
    output wire       tx_valid,
    input  wire       tx_ready
);
`include "pcl_datapath.vh"
`include "pcl_learning.vh"
`include "pcl_topology.vh"
    localparam integer INFER_BITS = 3 + PCL_NEURON_BITS + PCL_STEP_BITS + PCL_N_LAYERS * PCL_ROWCOUNT_BITS;
    localparam integer LEARN_BITS = 1 + PCL_WCOUNT_BITS + PCL_NDELTA_BITS;
    localparam integer RESULT_BITS = INFER_BITS + (PCL_LEARNING != 0 ? LEARN_BITS : 0);

    wire wl_valid, wl_ready, wl_threshold, in_valid, in_ready, in_last;
    wire [PCL_WADDR_BITS-1:0] wl_addr;
    wire [PCL_WL_BITS-1:0] wl_data;
    wire [PCL_IN_INDEX_BITS-1:0] in_index;
    wire [PCL_STEP_BITS-1:0] in_step, sp_step, res_step;
    wire sp_valid, sp_ready, res_valid, res_ready, res_decided, res_tie, res_input_error;
    wire [PCL_LAYER_BITS-1:0] sp_layer;
    wire [PCL_NEURON_BITS-1:0] sp_index, res_class;
    wire [PCL_N_LAYERS*PCL_ROWCOUNT_BITS-1:0] res_rows_read;
    wire wmem_en, wmem_we;
    wire [PCL_WADDR_BITS-1:0] wmem_addr;
    wire [PCL_WORD_BITS-1:0] wmem_wdata, wmem_rdata;
    wire tc_valid, tc_ready, rdq_valid, rdq_ready, rd_valid, rd_ready, rd_last, res_trained;
    wire [PCL_NEURON_BITS-1:0] tc_label;
    wire [31:0] tc_index;
    wire [PCL_WORD_BITS-1:0] rd_data;
    wire [PCL_WCOUNT_BITS-1:0] res_wc;
    wire [PCL_NDELTA_BITS-1:0] res_nd;
    wire [RESULT_BITS-1:0] res_payload;
    generate
        if (PCL_LEARNING != 0) begin : g_learn_result
            assign res_payload = {res_input_error, res_tie, res_decided, res_class, res_step, res_rows_read,
                                  res_trained, res_wc, res_nd};
        end else begin : g_infer_result
            assign res_payload = {res_input_error, res_tie, res_decided, res_class, res_step, res_rows_read};
            wire unused_learning = &{1'b0, res_trained, res_wc, res_nd};
        end
    endgenerate

    pcl_byte_bridge #(
        .WADDR_BITS(PCL_WADDR_BITS), .WL_BITS(PCL_WL_BITS), .STEP_BITS(PCL_STEP_BITS),
        .IN_INDEX_BITS(PCL_IN_INDEX_BITS), .LAYER_BITS(PCL_LAYER_BITS), .NEURON_BITS(PCL_NEURON_BITS),
        .RESULT_BITS(RESULT_BITS), .LEARNING(PCL_LEARNING), .WORD_BITS(PCL_WORD_BITS)
    ) u_bridge (
        .clk(clk), .rst(rst), .rx_data(rx_data), .rx_valid(rx_valid), .rx_ready(rx_ready),
        .tx_data(tx_data), .tx_valid(tx_valid), .tx_ready(tx_ready),
        .wl_valid(wl_valid), .wl_ready(wl_ready), .wl_threshold(wl_threshold), .wl_addr(wl_addr),
        .wl_data(wl_data), .in_valid(in_valid), .in_ready(in_ready), .in_index(in_index),
        .in_step(in_step), .in_last(in_last), .sp_valid(sp_valid), .sp_ready(sp_ready),
        .sp_payload({sp_layer, sp_index, sp_step}), .res_valid(res_valid), .res_ready(res_ready),
        .res_payload(res_payload), .tc_valid(tc_valid), .tc_ready(tc_ready), .tc_label(tc_label),
        .tc_index(tc_index), .rdq_valid(rdq_valid), .rdq_ready(rdq_ready), .rd_valid(rd_valid),
        .rd_ready(rd_ready), .rd_data(rd_data), .rd_last(rd_last));

    pcl_spram_up5k #(.WIDTH(PCL_WORD_BITS), .DEPTH(PCL_WEIGHT_WORDS), .ADDR_BITS(PCL_WADDR_BITS)) u_wram (
        .clk(clk), .en(wmem_en), .we(wmem_we), .addr(wmem_addr), .wdata(wmem_wdata), .rdata(wmem_rdata));

    pcl_core #(
`include "pcl_core_params.vh"
    ) u_core (
        .clk(clk), .rst(rst),
        .wl_valid(wl_valid), .wl_ready(wl_ready), .wl_threshold(wl_threshold), .wl_addr(wl_addr),
        .wl_data(wl_data), .wmem_en(wmem_en), .wmem_we(wmem_we), .wmem_addr(wmem_addr),
        .wmem_wdata(wmem_wdata), .wmem_rdata(wmem_rdata),
        .in_valid(in_valid), .in_ready(in_ready), .in_index(in_index), .in_step(in_step), .in_last(in_last),
        .sp_valid(sp_valid), .sp_ready(sp_ready), .sp_layer(sp_layer), .sp_index(sp_index), .sp_step(sp_step),
        .res_valid(res_valid), .res_ready(res_ready), .res_decided(res_decided), .res_class(res_class),
        .res_step(res_step), .res_tie(res_tie), .res_rows_read(res_rows_read),
        .res_input_error(res_input_error), .tc_valid(tc_valid), .tc_ready(tc_ready), .tc_label(tc_label),
        .tc_index(tc_index), .rdq_valid(rdq_valid), .rdq_ready(rdq_ready), .rd_valid(rd_valid),
        .rd_ready(rd_ready), .rd_data(rd_data), .rd_last(rd_last), .res_trained(res_trained),
        .res_weights_changed(res_wc), .res_neurons_with_delta(res_nd));
endmodule

`resetall
