// Single-port synchronous RAM (one address; read data registered, valid the cycle after en & !we).
// The weight memory port of pcl_core has exactly this shape, so block RAM, SPRAM
// (pcl_spram_up5k.v) or an external SRAM controller can sit behind it.
`resetall
`default_nettype none

module pcl_ram_sp #(
    parameter integer WIDTH = 8,
    parameter integer DEPTH = 16,
    parameter integer ADDR_BITS = 4
) (
    input  wire                 clk,
    input  wire                 en,
    input  wire                 we,
    input  wire [ADDR_BITS-1:0] addr,
    input  wire [WIDTH-1:0]     wdata,
    output reg  [WIDTH-1:0]     rdata
);
    initial begin
        if (WIDTH < 1 || DEPTH < 1 || ADDR_BITS < 1 || DEPTH > (1 << ADDR_BITS))
            $fatal(1, "pcl_ram_sp: WIDTH %0d, DEPTH %0d: DEPTH must fit ADDR_BITS = %0d", WIDTH, DEPTH, ADDR_BITS);
    end

    reg [WIDTH-1:0] mem [0:DEPTH-1];
    always @(posedge clk) begin
        if (en) begin
            if (we) mem[addr] <= wdata;
            else rdata <= mem[addr];
        end
    end
endmodule

`resetall
