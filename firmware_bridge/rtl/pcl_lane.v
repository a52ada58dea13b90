// One neuron lane: the per-neuron arithmetic of docs/datapath.md section 4, combinational.
//
// State word of a neuron between operations (one word per neuron slot in its lane's state RAM):
//   {fired, mem, cur_wide}
//   cur_wide  WIDE_BITS signed: I_decayed + the rows that arrived this step << CURRENT_FRAC_BITS
//             (exact: WIDE_BITS = max(CURRENT_BITS, accumulator_bits(n_pre + 1)) + 1)
//   mem       MEMBRANE_BITS signed: V
//   fired     spike flag, never cleared within an image
//
// acc (one arriving weight row):  cur_wide' = (init ? 0 : cur_wide) + (w << CURRENT_FRAC_BITS)
//   init marks the bias row at step 0; it also zeroes V and the flag (no separate clear pass).
// sweep (once per step, after the arrivals):
//   I    = OVF_I(cur_wide)               saturate or wrap to CURRENT_BITS
//   V'   = OVF_V(V + I)                  exact sum, then saturate or wrap to MEMBRANE_BITS
//   fire = valid & !fired & (V' >= threshold)      signed compare
//   cur_wide' = I - (I >>> TIME_SHIFT)   decay for the next step (arithmetic shift: floor)
// Written as one procedural block so that a simulator evaluates only the operation in use.
module pcl_lane #(
    parameter integer WEIGHT_BITS = 8,
    parameter integer CURRENT_FRAC_BITS = 6,
    parameter integer CURRENT_BITS = 24,
    parameter integer MEMBRANE_BITS = 24,
    parameter integer WIDE_BITS = 25,
    parameter integer TIME_SHIFT = 6,
    parameter integer CURRENT_WRAP = 0,
    parameter integer MEMBRANE_WRAP = 0,
    parameter integer SW = 1 + MEMBRANE_BITS + WIDE_BITS
) (
    input  wire [SW-1:0]            state_in,
    input  wire [WEIGHT_BITS-1:0]   weight,
    input  wire                     acc,      // 1: accumulate a row, 0: sweep
    input  wire                     init,
    input  wire                     valid,
    input  wire [MEMBRANE_BITS-1:0] threshold,
    output reg  [SW-1:0]            state_out,
    output reg                      fire
);
    localparam integer VSUM_BITS = (MEMBRANE_BITS > CURRENT_BITS ? MEMBRANE_BITS : CURRENT_BITS) + 1;
    localparam [CURRENT_BITS-1:0] CUR_MAX = {1'b0, {(CURRENT_BITS - 1){1'b1}}};
    localparam [CURRENT_BITS-1:0] CUR_MIN = {1'b1, {(CURRENT_BITS - 1){1'b0}}};
    localparam [MEMBRANE_BITS-1:0] MEM_MAX = {1'b0, {(MEMBRANE_BITS - 1){1'b1}}};
    localparam [MEMBRANE_BITS-1:0] MEM_MIN = {1'b1, {(MEMBRANE_BITS - 1){1'b0}}};

    wire [WIDE_BITS-1:0] cur_wide = state_in[WIDE_BITS-1:0];
    wire [MEMBRANE_BITS-1:0] mem = state_in[WIDE_BITS +: MEMBRANE_BITS];
    wire fired = state_in[SW-1];

    reg [WIDE_BITS-1:0] w_shifted, acc_cur;
    reg [WIDE_BITS-CURRENT_BITS:0] cur_top;
    reg [CURRENT_BITS-1:0] cur, cur_shifted, cur_decayed;
    reg [VSUM_BITS-1:0] vsum;
    reg [VSUM_BITS-MEMBRANE_BITS:0] v_top;
    reg [MEMBRANE_BITS-1:0] v_new;

    always @* begin
        fire = 1'b0;
        if (acc) begin
            w_shifted = {{(WIDE_BITS - WEIGHT_BITS){weight[WEIGHT_BITS-1]}}, weight};
            w_shifted = w_shifted << CURRENT_FRAC_BITS;
            acc_cur = (init ? {WIDE_BITS{1'b0}} : cur_wide) + w_shifted;
            state_out = init ? {1'b0, {MEMBRANE_BITS{1'b0}}, acc_cur} : {fired, mem, acc_cur};
        end else begin
            // OVF_I: the value fits CURRENT_BITS iff its bits from CURRENT_BITS-1 up are all equal.
            cur_top = cur_wide[WIDE_BITS-1:CURRENT_BITS-1];
            if (CURRENT_WRAP != 0 || (&cur_top) || !(|cur_top)) cur = cur_wide[CURRENT_BITS-1:0];
            else cur = cur_wide[WIDE_BITS-1] ? CUR_MIN : CUR_MAX;
            vsum = {{(VSUM_BITS - MEMBRANE_BITS){mem[MEMBRANE_BITS-1]}}, mem}
                 + {{(VSUM_BITS - CURRENT_BITS){cur[CURRENT_BITS-1]}}, cur};
            v_top = vsum[VSUM_BITS-1:MEMBRANE_BITS-1];
            if (MEMBRANE_WRAP != 0 || (&v_top) || !(|v_top)) v_new = vsum[MEMBRANE_BITS-1:0];
            else v_new = vsum[VSUM_BITS-1] ? MEM_MIN : MEM_MAX;
            fire = valid && !fired && ($signed(v_new) >= $signed(threshold));
            // The decayed current lies between 0 and I: it stays within CURRENT_BITS.
            // (a separate assignment: inside a wider unsigned expression >>> would be logical)
            cur_shifted = $signed(cur) >>> TIME_SHIFT;
            cur_decayed = cur - cur_shifted;
            state_out = {fired | fire, v_new, {(WIDE_BITS - CURRENT_BITS){cur_decayed[CURRENT_BITS-1]}}, cur_decayed};
        end
    end
endmodule
