// iCE40 UP5K target wrapper: the single-port synchronous RAM of pcl_ram_sp built from
// SB_SPRAM256KA blocks (16 K x 16 bit each, 4 on the part). WIDTH is tiled in 16-bit columns,
// DEPTH in 16 K banks; read data is valid the cycle after en & !we, as pcl_core expects.
// addr bits 13:0 address a word inside a bank (zero-extended when ADDR_BITS < 14), the bits
// above pick the bank; rdata follows the bank of the last read.
`resetall
`default_nettype none

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
    localparam integer LOW_BITS = ADDR_BITS < 14 ? ADDR_BITS : 14;   // addr bits inside a bank

    initial begin
        if (WIDTH < 1 || DEPTH < 1 || DEPTH > (1 << ADDR_BITS))
            $fatal(1, "pcl_spram_up5k: WIDTH %0d, DEPTH %0d: DEPTH must fit ADDR_BITS = %0d", WIDTH, DEPTH, ADDR_BITS);
        // The bank is addr >> 14: address bits above 13 must be exactly the bank number's.
        if ((BANKS > 1 || ADDR_BITS > 14) && ADDR_BITS != 14 + $clog2(BANKS))
            $fatal(1, "pcl_spram_up5k: DEPTH %0d (%0d banks) needs ADDR_BITS = %0d, got %0d",
                   DEPTH, BANKS, 14 + $clog2(BANKS), ADDR_BITS);
    end

    wire [13:0] word_addr = {{(14 - LOW_BITS){1'b0}}, addr[LOW_BITS-1:0]};
    wire [BANK_BITS-1:0] bank;
    generate
        if (BANKS > 1) begin : g_banked
            assign bank = addr[ADDR_BITS-1:14];
        end else begin : g_one_bank
            assign bank = 1'b0;
        end
    endgenerate
    reg [BANK_BITS-1:0] bank_q;
    always @(posedge clk) if (en && !we) bank_q <= bank;

    wire [COLS*16-1:0] wpad = {{(COLS * 16 - WIDTH){1'b0}}, wdata};
    wire [BANKS*COLS*16-1:0] dout;
    genvar b, c;
    generate
        for (b = 0; b < BANKS; b = b + 1) begin : g_bank
            localparam integer BANK_I = b;
            localparam [BANK_BITS-1:0] BANK = BANK_I[BANK_BITS-1:0];
            for (c = 0; c < COLS; c = c + 1) begin : g_col
                SB_SPRAM256KA u_spram (
                    .ADDRESS(word_addr), .DATAIN(wpad[c*16 +: 16]), .MASKWREN(4'b1111),
                    .WREN(we), .CHIPSELECT(en && bank == BANK), .CLOCK(clk),
                    .STANDBY(1'b0), .SLEEP(1'b0), .POWEROFF(1'b1),
                    .DATAOUT(dout[(b*COLS + c)*16 +: 16]));
            end
        end
    endgenerate
    assign rdata = dout[bank_q*COLS*16 +: WIDTH];
endmodule

`resetall
