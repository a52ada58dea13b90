// Simple dual-port synchronous RAM: one write port, one registered read port (iCE40 EBR shape).
// A read of the address being written in the same cycle returns the old word here; pcl_core and
// pcl_learn never do that (the core leaves gap cycles; the learning engine reads and writes
// different layers' delta words, different halves of its row buffer, and its spike and arrival
// records in different phases), so synthesis is told not to build the collision logic
// (no_rw_check: yosys would otherwise register the write data and multiplex it into the read
// port, ~3 cells per bit of width). rdata holds while re is low.
`resetall
`default_nettype none

module pcl_ram_sdp #(
    parameter integer WIDTH = 8,
    parameter integer DEPTH = 16,
    parameter integer ADDR_BITS = 4
) (
    input  wire                 clk,
    input  wire                 we,
    input  wire [ADDR_BITS-1:0] waddr,
    input  wire [WIDTH-1:0]     wdata,
    input  wire                 re,
    input  wire [ADDR_BITS-1:0] raddr,
    output reg  [WIDTH-1:0]     rdata
);
    initial begin
        if (WIDTH < 1 || DEPTH < 1 || ADDR_BITS < 1 || DEPTH > (1 << ADDR_BITS))
            $fatal(1, "pcl_ram_sdp: WIDTH %0d, DEPTH %0d: DEPTH must fit ADDR_BITS = %0d", WIDTH, DEPTH, ADDR_BITS);
    end

    (* no_rw_check *)
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    always @(posedge clk) begin
        if (we) mem[waddr] <= wdata;
        if (re) rdata <= mem[raddr];
    end
endmodule

`resetall
