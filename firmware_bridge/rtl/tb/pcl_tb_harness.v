// Simulation harness for pcl_core, inference-only or learning (not for synthesis): the hardware
// half of the cocotb bench firmware_bridge/rtl/tb/core_bench.py, driven by firmware_bridge.rtl.sim
// (inference requests) and firmware_bridge.rtl.train_sim (training steps and read-backs).
//
// go_load: read +load_hex into the source memory and stream n_beats beats into the weight-load
//          port; done rises when the last beat was accepted.
// go_run:  read +cmd_hex (n_beats commands {kind, payload}) and feed each to its port in order:
//          kind 0 an input beat {last, step, index}, 1 a training request {label, sample index},
//          2 a weight read-back request (1 and 2 only to a learning core). Every spike, result and
//          read-back word is recorded; when n_results results and n_words words have arrived the
//          records are written to +sp_hex / +res_hex / +rd_hex and done rises.
// throttle: pseudo-random gaps on in_valid and back-pressure on sp_ready / res_ready / rd_ready.
// Record layouts: RtlLayout.spike_fields() / harness_result_fields() (firmware_bridge/rtl/params.py).
// A result's first counter is its cycles, from the step's first beat taken (the training request,
// or the first input beat) to the result beat. In a learning build the phase counters after it
// (TB_PHASE_COUNTERS there) look into the core and its learning engine by hierarchical name; they
// count, they change nothing. In an inference-only build they are 0.
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
    input  wire [31:0] n_results,
    input  wire [31:0] n_words,
    output reg         done,
    output reg  [31:0] n_spikes,
    output reg  [31:0] res_count,
    output reg  [31:0] word_count
);
`include "pcl_datapath.vh"
`include "pcl_learning.vh"
`include "pcl_topology.vh"
`include "pcl_tb.vh"
    localparam integer LOAD_W = 1 + PCL_WADDR_BITS + PCL_WL_BITS;
    localparam integer IN_W = 1 + PCL_STEP_BITS + PCL_IN_INDEX_BITS;
    localparam integer TC_W = PCL_NEURON_BITS + 32;
    localparam integer PAY_W = IN_W > TC_W ? IN_W : TC_W;
    localparam integer CMD_W = 2 + PAY_W;
    localparam integer SRC_W = LOAD_W > CMD_W ? LOAD_W : CMD_W;
    localparam integer N_COUNTERS = 8;
    localparam integer SP_W = PCL_TB_IMAGE_BITS + PCL_LAYER_BITS + PCL_NEURON_BITS + PCL_STEP_BITS;
    localparam integer RES_W = 32 * N_COUNTERS + 3 + PCL_NEURON_BITS + PCL_STEP_BITS
                             + PCL_N_LAYERS * PCL_ROWCOUNT_BITS + 1 + PCL_WCOUNT_BITS + PCL_NDELTA_BITS;

    reg [SRC_W-1:0] src_mem [0:PCL_TB_SRC_DEPTH-1];
    reg [SP_W-1:0]  sp_mem  [0:PCL_TB_SP_DEPTH-1];
    reg [RES_W-1:0] res_mem [0:PCL_TB_RES_DEPTH-1];
    reg [PCL_WORD_BITS-1:0] rd_mem [0:PCL_TB_WORD_DEPTH-1];
    reg [8*1024-1:0] load_hex, cmd_hex, sp_hex, res_hex, rd_hex;
    // The clock is generated here, not by cocotb: a simulator-side clock costs no Python
    // callback per edge, which makes the whole simulation several times faster.
    initial clk = 1'b0;
    always #5 clk = ~clk;
    initial begin
        if (!$value$plusargs("load_hex=%s", load_hex)) load_hex = "load.hex";
        if (!$value$plusargs("cmd_hex=%s", cmd_hex)) cmd_hex = "cmd.hex";
        if (!$value$plusargs("sp_hex=%s", sp_hex)) sp_hex = "sp.hex";
        if (!$value$plusargs("res_hex=%s", res_hex)) res_hex = "res.hex";
        if (!$value$plusargs("rd_hex=%s", rd_hex)) rd_hex = "rd.hex";
    end

    reg loading, running, dump, in_step;
    reg [31:0] ptr;
    reg [15:0] lfsr;
    wire [SRC_W-1:0] beat = src_mem[ptr];
    wire have_beat = ptr < n_beats;
    wire [1:0] kind = beat[PAY_W +: 2];

    // ---- core and its weight RAM
    wire wl_ready, wmem_en, wmem_we, tc_ready, rdq_ready, rd_valid, rd_last;
    wire [PCL_WADDR_BITS-1:0] wmem_addr;
    wire [PCL_WORD_BITS-1:0] wmem_wdata, wmem_rdata, rd_data;
    wire in_ready, sp_valid, res_valid;
    wire [PCL_LAYER_BITS-1:0] sp_layer;
    wire [PCL_NEURON_BITS-1:0] sp_index, res_class;
    wire [PCL_STEP_BITS-1:0] sp_step, res_step;
    wire res_decided, res_tie, res_input_error, res_trained;
    wire [PCL_WCOUNT_BITS-1:0] res_wc;
    wire [PCL_NDELTA_BITS-1:0] res_nd;
    wire [PCL_N_LAYERS*PCL_ROWCOUNT_BITS-1:0] res_rows_read;
    wire wl_valid = loading && have_beat;
    wire in_valid = running && have_beat && kind == 2'd0 && (!throttle || lfsr[0]);
    wire tc_valid = running && have_beat && kind == 2'd1;
    wire rdq_valid = running && have_beat && kind == 2'd2;
    wire sp_ready = !throttle || lfsr[3];
    wire res_ready = !throttle || lfsr[7];
    wire rd_ready = !throttle || lfsr[11];

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
        .tc_valid(tc_valid), .tc_ready(tc_ready), .tc_label(beat[32 +: PCL_NEURON_BITS]), .tc_index(beat[31:0]),
        .rdq_valid(rdq_valid), .rdq_ready(rdq_ready), .rd_valid(rd_valid), .rd_ready(rd_ready),
        .rd_data(rd_data), .rd_last(rd_last),
        .in_valid(in_valid), .in_ready(in_ready), .in_index(beat[PCL_IN_INDEX_BITS-1:0]),
        .in_step(beat[PCL_IN_INDEX_BITS +: PCL_STEP_BITS]), .in_last(beat[PCL_IN_INDEX_BITS + PCL_STEP_BITS]),
        .sp_valid(sp_valid), .sp_ready(sp_ready), .sp_layer(sp_layer), .sp_index(sp_index), .sp_step(sp_step),
        .res_valid(res_valid), .res_ready(res_ready), .res_decided(res_decided), .res_class(res_class),
        .res_step(res_step), .res_tie(res_tie), .res_rows_read(res_rows_read),
        .res_input_error(res_input_error), .res_trained(res_trained), .res_weights_changed(res_wc),
        .res_neurons_with_delta(res_nd));

    // ---- where the cycles of a step go (looked up in the core and its learning engine)
    reg [31:0] c_all, c_fwd, c_out, c_lout, c_lhid, c_draw, c_rd, c_wr;
    wire core_fwd, in_learn, e_out, e_layer, e_is_out, e_draw;
    generate
        if (PCL_LEARNING != 0) begin : g_phases
            assign core_fwd = u_core.state != u_core.S_IDLE && u_core.state != u_core.S_LEARN
                              && u_core.state != u_core.S_RESULT && u_core.state != u_core.S_READBACK;
            assign in_learn = u_core.state == u_core.S_LEARN;
            wire [2:0] estate = u_core.g_learn.u_learn.estate;
            assign e_out = estate == u_core.g_learn.u_learn.E_WAIT || estate == u_core.g_learn.u_learn.E_OUT;
            assign e_layer = estate == u_core.g_learn.u_learn.E_LSTART || estate == u_core.g_learn.u_learn.E_LRUN;
            assign e_is_out = u_core.g_learn.u_learn.kk == u_core.g_learn.u_learn.OUT;
            assign e_draw = u_core.g_learn.u_learn.tok_v
                            && u_core.g_learn.u_learn.tok_kind == u_core.g_learn.u_learn.K_DRAW;
        end else begin : g_no_phases
            assign {core_fwd, in_learn, e_out, e_layer, e_is_out, e_draw} = 6'd0;
        end
    endgenerate
    wire step_start = (tc_valid && tc_ready) || (!in_step && in_valid && in_ready);

    always @(posedge clk) begin
        lfsr <= {lfsr[14:0], lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]};
        if (step_start) begin
            in_step <= 1'b1;
            c_all <= 32'd1;
            {c_fwd, c_out, c_lout, c_lhid, c_draw, c_rd, c_wr} <= {(7 * 32){1'b0}};
        end else if (in_step) begin
            c_all <= c_all + 32'd1;
            c_fwd <= c_fwd + {31'd0, core_fwd};
            c_out <= c_out + {31'd0, in_learn && e_out};
            c_lout <= c_lout + {31'd0, in_learn && e_layer && e_is_out};
            c_lhid <= c_lhid + {31'd0, in_learn && e_layer && !e_is_out};
            c_draw <= c_draw + {31'd0, in_learn && e_draw};
            c_rd <= c_rd + {31'd0, wmem_en && !wmem_we && in_learn};
            c_wr <= c_wr + {31'd0, wmem_we && in_learn};
        end
        if (go_load) begin
            $readmemh(load_hex, src_mem, 0, n_beats - 1);
            ptr <= 0;
            loading <= 1'b1;
            done <= 1'b0;
        end else if (go_run) begin
            $readmemh(cmd_hex, src_mem, 0, n_beats - 1);
            ptr <= 0;
            running <= 1'b1;
            done <= 1'b0;
            n_spikes <= 0;
            res_count <= 0;
            word_count <= 0;
            in_step <= 1'b0;
        end else begin
            if (loading && wl_valid && wl_ready) begin
                ptr <= ptr + 1;
                if (ptr + 1 == n_beats) begin
                    loading <= 1'b0;
                    done <= 1'b1;
                end
            end
            if ((in_valid && in_ready) || (tc_valid && tc_ready) || (rdq_valid && rdq_ready)) ptr <= ptr + 1;
            if (sp_valid && sp_ready) begin
                sp_mem[n_spikes] <= {res_count[PCL_TB_IMAGE_BITS-1:0], sp_layer, sp_index, sp_step};
                n_spikes <= n_spikes + 1;
            end
            if (running && res_valid && res_ready) begin
                res_mem[res_count] <= {c_all + 32'd1, c_fwd, c_out, c_lout, c_lhid, c_draw, c_rd, c_wr,
                                       res_input_error, res_tie, res_decided, res_class, res_step, res_rows_read,
                                       res_trained, res_wc, res_nd};
                res_count <= res_count + 1;
                in_step <= 1'b0;
            end
            if (running && rd_valid && rd_ready) begin
                rd_mem[word_count] <= rd_data;
                word_count <= word_count + 1;
            end
        end
        dump <= running && !dump && !done && !go_run && ptr == n_beats && res_count == n_results
                && word_count == n_words;
        if (dump) begin
            if (n_spikes != 0) $writememh(sp_hex, sp_mem, 0, n_spikes - 1);
            if (res_count != 0) $writememh(res_hex, res_mem, 0, res_count - 1);
            if (word_count != 0) $writememh(rd_hex, rd_mem, 0, word_count - 1);
            running <= 1'b0;
            done <= 1'b1;
        end
        if (rst) begin
            dump <= 1'b0;
            loading <= 1'b0;
            running <= 1'b0;
            done <= 1'b0;
            in_step <= 1'b0;
            ptr <= 0;
            n_spikes <= 0;
            res_count <= 0;
            word_count <= 0;
            lfsr <= 16'hACE1;
        end
    end

endmodule

`resetall
