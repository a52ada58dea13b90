// The counter-based draw of the learning rule (docs/learning-rule.md section 7), pipelined:
//   u = mix32(x):  x ^= x >> 16;  x *= MIX_MUL_1;  x ^= x >> 13;  x *= MIX_MUL_2;  x ^= x >> 16
// all modulo 2**32. One x per cycle in, its u LATENCY = 4 cycles later, with the tag that came
// with it (the tags keep their order: a fixed-latency pipe, no back-pressure).
//   stage 1  x0 = in_x                                   (register)
//   stage 2  p  = (x0 ^ x0 >> 16) * MIX_MUL_1            (32 x 32 -> low 32: three 16 x 16 DSPs)
//   stage 3  q  = (p ^ p >> 13) * MIX_MUL_2              (three more)
//   stage 4  u  = q ^ q >> 16,  below = (u >> 16) < p_q16   (u >> 16 = q >> 16: the compare with the
//            probability p_q16, 0 .. 65536, is taken from q in the same stage, off the consumer's path;
//            p_q16 must hold while a draw is in the pipe)
// The multipliers are plain `*` by a 32-bit constant; yosys synth_ice40 -dsp maps each to three
// SB_MAC16 (the iCE40 UP5K has eight).
`resetall
`default_nettype none

module pcl_mix32 #(
    parameter [31:0] MIX_MUL_1 = 32'h85EBCA6B,
    parameter [31:0] MIX_MUL_2 = 32'hC2B2AE35,
    parameter integer TAG_BITS = 1
) (
    input  wire                clk,
    input  wire                rst,
    input  wire                in_valid,
    input  wire [31:0]         in_x,
    input  wire [TAG_BITS-1:0] in_tag,
    input  wire [16:0]         p_q16,
    output wire                out_valid,
    output wire [31:0]         out_u,
    output reg                 out_below,
    output wire [TAG_BITS-1:0] out_tag
);
    localparam integer LATENCY = 4;

    initial begin
        if (TAG_BITS < 1) $fatal(1, "pcl_mix32: TAG_BITS must be >= 1");
    end

    reg [31:0] x0, p, q, u;
    reg [LATENCY-1:0] v;
    reg [TAG_BITS-1:0] t1, t2, t3, t4;
    wire [31:0] a = x0 ^ (x0 >> 16);
    wire [31:0] b = p ^ (p >> 13);
    always @(posedge clk) begin
        x0 <= in_x;
        p <= a * MIX_MUL_1;
        q <= b * MIX_MUL_2;
        u <= q ^ (q >> 16);
        out_below <= {1'b0, q[31:16]} < p_q16;
        t1 <= in_tag;
        t2 <= t1;
        t3 <= t2;
        t4 <= t3;
        v <= {v[LATENCY-2:0], in_valid};
        if (rst) v <= {LATENCY{1'b0}};
    end
    assign out_valid = v[LATENCY-1];
    assign out_u = u;
    assign out_tag = t4;
endmodule

`resetall
