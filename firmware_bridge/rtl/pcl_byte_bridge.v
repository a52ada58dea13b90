// Byte-wide front end for pcl_core, so that the core fits a small package (UP5K SG48):
// 8-bit valid/ready streams in and out, little-endian packets of fixed length.
//
// RX packet (RX_BYTES bytes, the first byte holds the lowest bits): {kind[1:0], payload}
//   kind 0: weight word   payload = {addr[WADDR_BITS], data[WL_BITS]}
//   kind 1: threshold     payload = {layer in addr, threshold in data}
//   kind 2: input spike   payload = {last, step[STEP_BITS], index[IN_INDEX_BITS]}
// TX packet (TX_BYTES bytes): {kind[1:0], payload}
//   kind 0: spike   payload = {layer, index, step}
//   kind 1: result  payload = {input_error, tie, decided, class, step, rows_read (layer K-1 first)}
// A packet is offered to the core once its last byte arrived (rx_ready is low until the core
// takes it); an RX packet of kind 3 is dropped. TX: a spike goes out before a result that is
// waiting at the same time; each packet is loaded when the previous one has left.
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
    parameter integer RESULT_BITS = 32
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
    input  wire [RESULT_BITS-1:0]   res_payload
);
    localparam integer LOAD_BITS = WADDR_BITS + WL_BITS;
    localparam integer SPIKE_IN_BITS = 1 + STEP_BITS + IN_INDEX_BITS;
    localparam integer RX_PAY = LOAD_BITS > SPIKE_IN_BITS ? LOAD_BITS : SPIKE_IN_BITS;
    localparam integer RX_BYTES = (RX_PAY + 2 + 7) / 8;
    localparam integer SP_BITS = LAYER_BITS + NEURON_BITS + STEP_BITS;
    localparam integer TX_PAY = SP_BITS > RESULT_BITS ? SP_BITS : RESULT_BITS;
    localparam integer TX_BYTES = (TX_PAY + 2 + 7) / 8;
    localparam integer RXC = $clog2(RX_BYTES + 1);
    localparam integer TXC = $clog2(TX_BYTES + 1);
    localparam [RXC-1:0] RX_FULL = RX_BYTES[RXC-1:0];
    localparam [TXC-1:0] TX_FULL = TX_BYTES[TXC-1:0];

    initial begin
        if (WADDR_BITS < 1 || WL_BITS < 1 || STEP_BITS < 1 || IN_INDEX_BITS < 1 || LAYER_BITS < 1
            || NEURON_BITS < 1 || RESULT_BITS < 1)
            $fatal(1, "pcl_byte_bridge: every field width must be >= 1");
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
    wire rx_taken = (wl_valid && wl_ready) || (in_valid && in_ready) || (rx_full && rx_kind == 2'd3);

    // ---- TX: load a spike or a result (spikes first), shift it out byte by byte
    reg [TX_BYTES*8-1:0] tx_buf;
    reg [TXC-1:0] tx_cnt;   // bytes left
    wire tx_empty = (tx_cnt == {TXC{1'b0}});
    assign sp_ready = tx_empty;
    assign res_ready = tx_empty && !sp_valid;
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
