// One neuron lane: the per-neuron arithmetic of docs/datapath.md section 4, in two stages.
//
// State word of a neuron between operations (one per neuron slot in the state RAM):
//   {fired, mem, cur_wide}
//   cur_wide  WIDE_BITS signed: I_decayed + the rows that arrived this step << CURRENT_FRAC_BITS
//             (exact: WIDE_BITS = max(CURRENT_BITS, accumulator_bits(n_pre + 1)) + 1)
//   mem       MEMBRANE_BITS signed: V
//   fired     spike flag, never cleared within an image
//
// acc (one arriving weight row):  cur_wide' = (init ? 0 : cur_wide) + (w << CURRENT_FRAC_BITS)
//   init marks the bias row at step 0; it also zeroes V and the flag (no separate clear pass).
// sweep (once per step, after the arrivals):
//   I    = OVF_I(cur_wide)               saturate or wrap to CURRENT_BITS        (stage 1)
//   S    = V + I                         exact, VSUM_BITS                        (stage 1)
//   V'   = OVF_V(S)                      saturate or wrap to MEMBRANE_BITS       (stage 2)
//   fire = valid & !fired & (V' >= threshold)      signed compare               (stage 2)
//   cur_wide' = I - (I >>> TIME_SHIFT)   decay for the next step (floor shift)  (stage 2)
// Stage 1 takes state_in/weight/acc/init (the cycle after the RAM read) and registers;
// stage 2 gives state_out/fire one cycle later (valid and threshold are stage-2 inputs).
// Each stage is one procedural block, so a simulator evaluates only the operation in use; every
// temporary of a block gets a value first on every path, so neither block holds a latch.
`resetall
`default_nettype none

module pcl_lane #(
    parameter integer WEIGHT_BITS = 8,
    parameter integer CURRENT_FRAC_BITS = 6,
    parameter integer CURRENT_BITS = 24,
    parameter integer MEMBRANE_BITS = 24,
    parameter integer WIDE_BITS = 25,
    parameter integer TIME_SHIFT = 6,
    parameter integer CURRENT_WRAP = 0,
    parameter integer MEMBRANE_WRAP = 0
) (
    input  wire                     clk,
    input  wire [MEMBRANE_BITS+WIDE_BITS:0] state_in,   // {fired, mem, cur_wide}
    input  wire [WEIGHT_BITS-1:0]   weight,
    input  wire                     acc,      // 1: accumulate a row, 0: sweep
    input  wire                     init,
    input  wire                     valid,
    input  wire [MEMBRANE_BITS-1:0] threshold,
    output reg  [MEMBRANE_BITS+WIDE_BITS:0] state_out,
    output reg                      fire
);
    localparam integer SW = 1 + MEMBRANE_BITS + WIDE_BITS;
    localparam integer VSUM_BITS = (MEMBRANE_BITS > CURRENT_BITS ? MEMBRANE_BITS : CURRENT_BITS) + 1;
    localparam [CURRENT_BITS-1:0] CUR_MAX = {1'b0, {(CURRENT_BITS - 1){1'b1}}};
    localparam [CURRENT_BITS-1:0] CUR_MIN = {1'b1, {(CURRENT_BITS - 1){1'b0}}};
    localparam [MEMBRANE_BITS-1:0] MEM_MAX = {1'b0, {(MEMBRANE_BITS - 1){1'b1}}};
    localparam [MEMBRANE_BITS-1:0] MEM_MIN = {1'b1, {(MEMBRANE_BITS - 1){1'b0}}};

    // Parameters that would otherwise misbehave silently (yosys stops at the $fatal of a failing
    // check: it cannot resolve the task; Icarus prints the message and exits).
    initial begin
        if (WEIGHT_BITS < 2 || CURRENT_BITS < 2 || MEMBRANE_BITS < 2)
            $fatal(1, "pcl_lane: WEIGHT_BITS, CURRENT_BITS and MEMBRANE_BITS must be >= 2");
        if (CURRENT_FRAC_BITS < 0 || TIME_SHIFT < 0)
            $fatal(1, "pcl_lane: CURRENT_FRAC_BITS and TIME_SHIFT must be >= 0");
        // The saturation test needs at least one bit above the current's sign bit, and a shifted
        // weight must fit: WIDE_BITS = max(CURRENT_BITS, accumulator bits) + 1 provides both.
        if (WIDE_BITS <= CURRENT_BITS || WIDE_BITS <= WEIGHT_BITS + CURRENT_FRAC_BITS)
            $fatal(1, "pcl_lane: WIDE_BITS = %0d is too narrow (CURRENT_BITS %0d, WEIGHT_BITS + CURRENT_FRAC_BITS %0d)",
                   WIDE_BITS, CURRENT_BITS, WEIGHT_BITS + CURRENT_FRAC_BITS);
        if ((CURRENT_WRAP != 0 && CURRENT_WRAP != 1) || (MEMBRANE_WRAP != 0 && MEMBRANE_WRAP != 1))
            $fatal(1, "pcl_lane: CURRENT_WRAP and MEMBRANE_WRAP are 0 (saturate) or 1 (wrap)");
    end

    wire [WIDE_BITS-1:0] cur_wide = state_in[WIDE_BITS-1:0];
    wire [MEMBRANE_BITS-1:0] mem = state_in[WIDE_BITS +: MEMBRANE_BITS];

    // ---- stage 1
    reg [WIDE_BITS-1:0] w_shifted, a_next;   // acc: new cur_wide; sweep: I (sign-extended)
    reg [VSUM_BITS-1:0] b_next;              // acc: V (sign-extended); sweep: V + I
    reg [WIDE_BITS-CURRENT_BITS:0] cur_top;
    reg [CURRENT_BITS-1:0] cur;
    reg f_next;
    always @* begin
        w_shifted = {WIDE_BITS{1'b0}};
        cur_top = {(WIDE_BITS - CURRENT_BITS + 1){1'b0}};
        cur = {CURRENT_BITS{1'b0}};
        if (acc) begin
            w_shifted = {{(WIDE_BITS - WEIGHT_BITS){weight[WEIGHT_BITS-1]}}, weight};
            w_shifted = w_shifted << CURRENT_FRAC_BITS;
            a_next = (init ? {WIDE_BITS{1'b0}} : cur_wide) + w_shifted;
            b_next = init ? {VSUM_BITS{1'b0}} : {{(VSUM_BITS - MEMBRANE_BITS){mem[MEMBRANE_BITS-1]}}, mem};
            f_next = !init && state_in[SW-1];
        end else begin
            // OVF_I: the value fits CURRENT_BITS iff its bits from CURRENT_BITS-1 up are all equal.
            cur_top = cur_wide[WIDE_BITS-1:CURRENT_BITS-1];
            if (CURRENT_WRAP != 0 || (&cur_top) || !(|cur_top)) cur = cur_wide[CURRENT_BITS-1:0];
            else cur = cur_wide[WIDE_BITS-1] ? CUR_MIN : CUR_MAX;
            a_next = {{(WIDE_BITS - CURRENT_BITS){cur[CURRENT_BITS-1]}}, cur};
            b_next = {{(VSUM_BITS - MEMBRANE_BITS){mem[MEMBRANE_BITS-1]}}, mem}
                   + {{(VSUM_BITS - CURRENT_BITS){cur[CURRENT_BITS-1]}}, cur};
            f_next = state_in[SW-1];
        end
    end
    reg [WIDE_BITS-1:0] a;
    reg [VSUM_BITS-1:0] b;
    reg fired, acc2;
    always @(posedge clk) begin
        a <= a_next;
        b <= b_next;
        fired <= f_next;
        acc2 <= acc;
    end

    // ---- stage 2
    // fire compares OVF_V(S) with the threshold without waiting for OVF_V: d = S - threshold
    // (exact, one carry chain straight from the registers) and
    //   saturate: OVF_V(S) >= th  <=>  d >= 0 or th = MEM_MIN (S above MEM_MAX gives d > 0;
    //             S below MEM_MIN gives MEM_MIN, which is >= th only for th = MEM_MIN);
    //   wrap:     OVF_V(S) = S - j * 2**MEMBRANE_BITS with j odd iff S[M] != S[M-1] (M =
    //             MEMBRANE_BITS), and OVF_V(S) - th fits M + 1 bits, so its sign is d[M] ^ S[M] ^ S[M-1].
    reg [VSUM_BITS-MEMBRANE_BITS:0] v_top;
    reg [MEMBRANE_BITS-1:0] v_new;
    reg [CURRENT_BITS-1:0] cur2, cur_shifted, cur_decayed;
    reg [VSUM_BITS:0] d;
    reg ge;
    wire th_min = (threshold == MEM_MIN);
    always @* begin
        fire = 1'b0;
        v_top = {(VSUM_BITS - MEMBRANE_BITS + 1){1'b0}};
        v_new = {MEMBRANE_BITS{1'b0}};
        cur2 = {CURRENT_BITS{1'b0}};
        cur_shifted = {CURRENT_BITS{1'b0}};
        cur_decayed = {CURRENT_BITS{1'b0}};
        d = {(VSUM_BITS + 1){1'b0}};
        ge = 1'b0;
        if (acc2) begin
            state_out = {fired, b[MEMBRANE_BITS-1:0], a};
        end else begin
            v_top = b[VSUM_BITS-1:MEMBRANE_BITS-1];
            if (MEMBRANE_WRAP != 0 || (&v_top) || !(|v_top)) v_new = b[MEMBRANE_BITS-1:0];
            else v_new = b[VSUM_BITS-1] ? MEM_MIN : MEM_MAX;
            d = {b[VSUM_BITS-1], b} - {{(VSUM_BITS + 1 - MEMBRANE_BITS){threshold[MEMBRANE_BITS-1]}}, threshold};
            if (MEMBRANE_WRAP != 0) ge = !(d[MEMBRANE_BITS] ^ b[MEMBRANE_BITS] ^ b[MEMBRANE_BITS-1]);
            else ge = !d[VSUM_BITS] || th_min;
            fire = valid && !fired && ge;
            // The decayed current lies between 0 and I: it stays within CURRENT_BITS.
            // (>>> in its own assignment: inside a wider unsigned expression it would be logical)
            cur2 = a[CURRENT_BITS-1:0];
            cur_shifted = $signed(cur2) >>> TIME_SHIFT;
            cur_decayed = cur2 - cur_shifted;
            state_out = {fired | fire, v_new, {(WIDE_BITS - CURRENT_BITS){cur_decayed[CURRENT_BITS-1]}}, cur_decayed};
        end
    end
endmodule

`resetall
