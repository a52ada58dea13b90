// Simple dual-port synchronous RAM: one write port, one registered read port (iCE40 EBR shape).
// A read of the address being written in the same cycle returns the old word; pcl_core never
// does that (it leaves gap cycles instead). rdata holds while re is low.
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

    reg [WIDTH-1:0] mem [0:DEPTH-1];
    always @(posedge clk) begin
        if (we) mem[waddr] <= wdata;
        if (re) rdata <= mem[raddr];
    end
endmodule

`resetall
