// iCE40 UP5K target wrapper: the single-port synchronous RAM of pcl_ram_sp built from
// SB_SPRAM256KA blocks (16 K x 16 bit each, 4 on the part). WIDTH is tiled in 16-bit columns,
// DEPTH in 16 K banks; read data is valid the cycle after en & !we, as pcl_core expects.
module pcl_spram_up5k #(
    parameter integer WIDTH = 64,
    parameter integer DEPTH = 16384,
    parameter integer ADDR_BITS = 14
) (
    input  wire                 clk,
    input  wire                 en,
    input  wire                 we,
    input  wire [ADDR_BITS-1:0] addr,
    input  wire [WIDTH-1:0]     wdata,
    output wire [WIDTH-1:0]     rdata
);
    localparam integer COLS = (WIDTH + 15) / 16;
    localparam integer BANKS = (DEPTH + 16383) / 16384;
    localparam integer BANK_BITS = BANKS > 1 ? $clog2(BANKS) : 1;

    wire [BANK_BITS-1:0] bank = (ADDR_BITS > 14) ? addr >> 14 : {BANK_BITS{1'b0}};
    reg [BANK_BITS-1:0] bank_q;
    always @(posedge clk) if (en && !we) bank_q <= bank;

    wire [COLS*16-1:0] wpad = {{(COLS * 16 - WIDTH){1'b0}}, wdata};
    wire [BANKS*COLS*16-1:0] dout;
    genvar b, c;
    generate
        for (b = 0; b < BANKS; b = b + 1) begin : g_bank
            for (c = 0; c < COLS; c = c + 1) begin : g_col
                SB_SPRAM256KA u_spram (
                    .ADDRESS(addr[13:0]), .DATAIN(wpad[c*16 +: 16]), .MASKWREN(4'b1111),
                    .WREN(we), .CHIPSELECT(en && bank == b), .CLOCK(clk),
                    .STANDBY(1'b0), .SLEEP(1'b0), .POWEROFF(1'b1),
                    .DATAOUT(dout[(b*COLS + c)*16 +: 16]));
            end
        end
    endgenerate
    assign rdata = dout[bank_q*COLS*16 +: WIDTH];
endmodule
