// Byte-wide front end for pcl_core, so that the core fits a small package (UP5K SG48):
// 8-bit valid/ready streams in and out, little-endian packets of fixed length.
//
// RX packet (RX_BYTES bytes, the first byte holds the lowest bits): {kind[1:0], payload}
//   kind 0: weight word   payload = {addr[WADDR_BITS], data[WL_BITS]}
//   kind 1: threshold     payload = {layer in addr, threshold in data}
//   kind 2: input spike   payload = {last, step[STEP_BITS], index[IN_INDEX_BITS]}
//   kind 3: LEARNING = 0: dropped; LEARNING = 1: a command, payload = {op, label[NEURON_BITS],
//           sample index[32]}: op 0 = training request {label, sample index} (before the
//           image's spikes), op 1 = weight read-back request
// TX packet (TX_BYTES bytes): {kind[1:0], payload}
//   kind 0: spike   payload = {layer, index, step}
//   kind 1: result  payload = {input_error, tie, decided, class, step, rows_read (layer K-1 first)}
//           (LEARNING = 1: then {trained, weights_changed, neurons_with_delta}: RESULT_BITS says)
//   kind 2: read-back word (LEARNING = 1)  payload = {last, data[WORD_BITS]}, one per weight-RAM word
// A packet is offered to the core once its last byte arrived (rx_ready is low until the core
// takes it). TX: a spike goes out before a read-back word or a result that is waiting at the same
// time; each packet is loaded when the previous one has left.
// (firmware_bridge/rtl/packets.py has the same layout for the testbenches and a host.)
`resetall
`default_nettype none

module pcl_byte_bridge #(
    parameter integer WADDR_BITS = 8,
    parameter integer WL_BITS = 32,
    parameter integer STEP_BITS = 10,
    parameter integer IN_INDEX_BITS = 10,
    parameter integer LAYER_BITS = 1,
    parameter integer NEURON_BITS = 7,
    parameter integer RESULT_BITS = 32,
    parameter integer LEARNING = 0,
    parameter integer WORD_BITS = 32
) (
    input  wire clk,
    input  wire rst,
    input  wire [7:0] rx_data,
    input  wire       rx_valid,
    output wire       rx_ready,
    output wire [7:0] tx_data,
    output wire       tx_valid,
    input  wire       tx_ready,
    // to the core
    output wire                     wl_valid,
    input  wire                     wl_ready,
    output wire                     wl_threshold,
    output wire [WADDR_BITS-1:0]    wl_addr,
    output wire [WL_BITS-1:0]       wl_data,
    output wire                     in_valid,
    input  wire                     in_ready,
    output wire [IN_INDEX_BITS-1:0] in_index,
    output wire [STEP_BITS-1:0]     in_step,
    output wire                     in_last,
    input  wire                     sp_valid,
    output wire                     sp_ready,
    input  wire [LAYER_BITS+NEURON_BITS+STEP_BITS-1:0] sp_payload,
    input  wire                     res_valid,
    output wire                     res_ready,
    input  wire [RESULT_BITS-1:0]   res_payload,
    // training (LEARNING = 1; unused otherwise)
    output wire                     tc_valid,
    input  wire                     tc_ready,
    output wire [NEURON_BITS-1:0]   tc_label,
    output wire [31:0]              tc_index,
    output wire                     rdq_valid,
    input  wire                     rdq_ready,
    input  wire                     rd_valid,
    output wire                     rd_ready,
    input  wire [WORD_BITS-1:0]     rd_data,
    input  wire                     rd_last
);
    localparam integer LOAD_BITS = WADDR_BITS + WL_BITS;
    localparam integer SPIKE_IN_BITS = 1 + STEP_BITS + IN_INDEX_BITS;
    localparam integer CMD_BITS = (LEARNING != 0) ? 1 + NEURON_BITS + 32 : 1;
    localparam integer RX_PAY_0 = LOAD_BITS > SPIKE_IN_BITS ? LOAD_BITS : SPIKE_IN_BITS;
    localparam integer RX_PAY = RX_PAY_0 > CMD_BITS ? RX_PAY_0 : CMD_BITS;
    localparam integer RX_BYTES = (RX_PAY + 2 + 7) / 8;
    localparam integer SP_BITS = LAYER_BITS + NEURON_BITS + STEP_BITS;
    localparam integer TX_PAY_0 = SP_BITS > RESULT_BITS ? SP_BITS : RESULT_BITS;
    localparam integer WORD_PAY = (LEARNING != 0) ? WORD_BITS + 1 : 1;
    localparam integer TX_PAY = TX_PAY_0 > WORD_PAY ? TX_PAY_0 : WORD_PAY;
    localparam integer TX_BYTES = (TX_PAY + 2 + 7) / 8;
    localparam integer RXC = $clog2(RX_BYTES + 1);
    localparam integer TXC = $clog2(TX_BYTES + 1);
    localparam [RXC-1:0] RX_FULL = RX_BYTES[RXC-1:0];
    localparam [TXC-1:0] TX_FULL = TX_BYTES[TXC-1:0];

    initial begin
        if (WADDR_BITS < 1 || WL_BITS < 1 || STEP_BITS < 1 || IN_INDEX_BITS < 1 || LAYER_BITS < 1
            || NEURON_BITS < 1 || RESULT_BITS < 1 || WORD_BITS < 1)
            $fatal(1, "pcl_byte_bridge: every field width must be >= 1");
        if (LEARNING != 0 && LEARNING != 1) $fatal(1, "pcl_byte_bridge: LEARNING is 0 or 1");
    end

    // ---- RX: shift bytes in until a packet is complete, then offer it to the core
    reg [RX_BYTES*8-1:0] rx_buf;
    reg [RXC-1:0] rx_cnt;   // bytes of the packet received so far
    wire rx_full = (rx_cnt == RX_FULL);
    wire [1:0] rx_kind = rx_buf[RX_PAY +: 2];
    assign rx_ready = !rx_full;
    assign wl_valid = rx_full && (rx_kind == 2'd0 || rx_kind == 2'd1);
    assign wl_threshold = (rx_kind == 2'd1);
    assign wl_data = rx_buf[WL_BITS-1:0];
    assign wl_addr = rx_buf[WL_BITS +: WADDR_BITS];
    assign in_valid = rx_full && (rx_kind == 2'd2);
    assign in_index = rx_buf[IN_INDEX_BITS-1:0];
    assign in_step = rx_buf[IN_INDEX_BITS +: STEP_BITS];
    assign in_last = rx_buf[IN_INDEX_BITS + STEP_BITS];
    // The command fields {op, label, sample index}, cut from the payload (zero where it is shorter).
    localparam integer CMDW = 1 + NEURON_BITS + 32;
    function [CMDW-1:0] cmd_of(input [RX_BYTES*8-1:0] b);
        integer i;
        begin
            cmd_of = {CMDW{1'b0}};
            for (i = 0; i < CMDW && i < RX_PAY; i = i + 1) cmd_of[i] = b[i];
        end
    endfunction
    wire [CMDW-1:0] rx_command = cmd_of(rx_buf);
    wire rx_cmd = rx_full && rx_kind == 2'd3;
    wire rx_op = rx_command[CMDW-1];
    assign tc_valid = (LEARNING != 0) && rx_cmd && !rx_op;
    assign rdq_valid = (LEARNING != 0) && rx_cmd && rx_op;
    assign tc_label = rx_command[32 +: NEURON_BITS];
    assign tc_index = rx_command[31:0];
    wire cmd_taken = (LEARNING == 0) ? rx_cmd : (tc_valid && tc_ready) || (rdq_valid && rdq_ready);
    wire rx_taken = (wl_valid && wl_ready) || (in_valid && in_ready) || cmd_taken;

    // ---- TX: load a spike or a result (spikes first), shift it out byte by byte
    reg [TX_BYTES*8-1:0] tx_buf;
    reg [TXC-1:0] tx_cnt;   // bytes left
    wire tx_empty = (tx_cnt == {TXC{1'b0}});
    assign sp_ready = tx_empty;
    wire word_valid = (LEARNING != 0) && rd_valid;
    wire [WORD_BITS:0] word_full = {rd_last, rd_data};
    wire [WORD_PAY-1:0] word_payload = word_full[WORD_PAY-1:0];
    generate
        if (LEARNING == 0) begin : g_infer
            wire unused_training = &{1'b0, tc_ready, rdq_ready, word_full};   // kind 3 is dropped
        end
    endgenerate
    assign rd_ready = (LEARNING != 0) && tx_empty && !sp_valid;
    assign res_ready = tx_empty && !sp_valid && !word_valid;
    assign tx_valid = !tx_empty;
    assign tx_data = tx_buf[7:0];

    always @(posedge clk) begin
        if (rx_taken) rx_cnt <= {RXC{1'b0}};
        else if (rx_valid && rx_ready) begin
            rx_buf <= {rx_data, rx_buf[RX_BYTES*8-1:8]};
            rx_cnt <= rx_cnt + 1'b1;
        end
        if (tx_empty) begin
            if (sp_valid) begin
                tx_buf <= {{(TX_BYTES * 8 - TX_PAY - 2){1'b0}}, 2'd0, {(TX_PAY - SP_BITS){1'b0}}, sp_payload};
                tx_cnt <= TX_FULL;
            end else if (word_valid) begin
                tx_buf <= {{(TX_BYTES * 8 - TX_PAY - 2){1'b0}}, 2'd2, {(TX_PAY - WORD_PAY){1'b0}}, word_payload};
                tx_cnt <= TX_FULL;
            end else if (res_valid) begin
                tx_buf <= {{(TX_BYTES * 8 - TX_PAY - 2){1'b0}}, 2'd1, {(TX_PAY - RESULT_BITS){1'b0}}, res_payload};
                tx_cnt <= TX_FULL;
            end
        end else if (tx_ready) begin
            tx_buf <= tx_buf >> 8;
            tx_cnt <= tx_cnt - 1'b1;
        end
        if (rst) begin
            rx_cnt <= {RXC{1'b0}};
            tx_cnt <= {TXC{1'b0}};
        end
    end
endmodule

`resetall
