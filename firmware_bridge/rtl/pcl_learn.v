// The sign-only learning rule of docs/learning-rule.md, one training step after pcl_core's forward
// pass, on the core's weight-RAM port. Every constant comes from LearningConfig through the
// generated pcl_learning.vh (bound by pcl_core_params.vh); the layout from pcl_topology.vh.
//
// While the forward pass runs (steps 0 .. E, E = start_end_step: pcl_core's margin window), the
// core records here the step of every spike (spike RAM, one entry per neuron) and the arrival
// step of every input row it reads (arrival list). The per-sample key
// key = mix32(SEED ^ mix32(t + SAMPLE_SALT)) and the probabilities p >> min(31, t / HALVING) are
// prepared from the training request meanwhile. Then, on `start`:
//
//   OUT    three passes over the output neurons (spike RAM + fired flags of the state RAM): the
//          correct output's step; the violators and the earliest one; the output deltas. Each
//          layer's deltas are kept as a "delta word" per group of LANES neurons in the delta
//          RAM: {deadline x LANES, minus plane, plus plane}, deadline = spike step (E for a
//          silent output).
//   LAYER  from the output layer back, for every row r of layer k that arrived (bias: step 0;
//          layer 0: the arrival list; k > 0: neuron h of layer k-1 with s_h + 1 <= E, a = s_h + 1):
//     A    (front) reads the row's delta words group by group; causal lanes
//          c = (plus | minus) & (a <= deadline); one mix32 draw per causal lane,
//          u = mix32(key + g * INDEX_MUL) with g = the weight's upload-stream index (the index
//          is key + WOFF_IM[k] + r * ROW_IM[k] + group * GROUP_IM + lane * INDEX_MUL, one 16 x 32
//          multiply per row, adds per group and lane); move = c & (u >> 16 < p). With p = 0 or
//          p = 65536 the draw is skipped (the spec's "never" and "always"). Words are queued in a
//          row buffer (two halves: A fills one row while B works on the previous one).
//     B    (back) reads each queued weight word once (the sign bits of the old weights), adds the
//          row's votes  plus  += popcount(c & (cp ^ S)),  minus += popcount(c & ~(cp ^ S))
//          (cp = c & plus plane, S = sign bits), registers the word, and writes back
//          w -= delta, saturated, from that register two cycles after the read (every word with a
//          moving lane; weights_changed counts real changes; reads of the next words fill the
//          port's free cycles). After the row, neuron h's delta = sign(plus - minus) goes into
//          layer k-1's delta word. A word is read before it is written, and each word once per step:
//          every sign the popcounts see is from before the step. Over the spike target
//          (start_quiet, from the core), a tie (plus = minus) of a neuron whose spike arrived by
//          the decision (s_h < D) gives +1 instead, and a layer k >= 1 runs without deltas.
// `start` is registered (it comes combinationally from the core's input stream): the start_*
// inputs are read the cycle after it and must hold until `done`, which is low from the cycle
// after `start` until the step is over; weights_changed / neurons_with_delta hold the last
// step's counts.
`resetall
`default_nettype none

module pcl_learn #(
    parameter integer LANES = 4,
    parameter integer N_LAYERS = 2,
    parameter integer N_IN = 4,
    parameter [32*N_LAYERS-1:0] LAYER_N_PRE = {32'd6, 32'd4},
    parameter [32*N_LAYERS-1:0] LAYER_N_POST = {32'd2, 32'd6},
    parameter [32*N_LAYERS-1:0] LAYER_GROUPS = {32'd1, 32'd2},
    parameter [32*N_LAYERS-1:0] LAYER_STATE_BASE = {32'd2, 32'd0},
    parameter [32*N_LAYERS-1:0] LAYER_WEIGHT_BASE = {32'd10, 32'd0},
    parameter [32*N_LAYERS-1:0] LAYER_ROW_SHIFT = {32'd0, 32'd1},
    parameter integer STATE_DEPTH = 3,
    parameter integer WADDR_BITS = 5,
    parameter integer SADDR_BITS = 2,
    parameter integer GROUP_BITS = 2,
    parameter integer ROW_BITS = 3,
    parameter integer NEURON_BITS = 3,
    parameter integer IN_INDEX_BITS = 2,
    parameter integer STEP_BITS = 10,
    parameter integer LAYER_BITS = 1,
    parameter integer WEIGHT_BITS = 8,
    parameter integer MAX_STEPS = 512,
    parameter integer NEURONS = 8,
    parameter integer NEURON_ADDR_BITS = 3,
    parameter integer WCOUNT_BITS = 6,
    parameter integer NDELTA_BITS = 4,
    parameter integer MARGIN_STEPS = 8,
    parameter integer HIDDEN_PROB_Q16 = 65536,
    parameter integer OUTPUT_PROB_Q16 = 65536,
    parameter integer PROB_HALVING_SAMPLES = 180000,
    parameter [31:0] LEARN_SEED = 32'd0,
    parameter integer ALL_VIOLATORS = 0,
    parameter integer CORRECT_ALWAYS = 0,
    parameter [31:0] MIX_MUL_1 = 32'h85EBCA6B,
    parameter [31:0] MIX_MUL_2 = 32'hC2B2AE35,
    parameter [31:0] INDEX_MUL = 32'h9E3779B9,
    parameter [31:0] SAMPLE_SALT = 32'h3C6EF372
) (
    input  wire                     clk,
    input  wire                     rst,
    // the training request's sample index (key and probabilities are prepared from it)
    input  wire                     prep,
    input  wire [31:0]              prep_index,
    // what the forward pass records
    input  wire                     spk_we,
    input  wire [LAYER_BITS-1:0]    spk_layer,
    input  wire [NEURON_BITS-1:0]   spk_index,
    input  wire [STEP_BITS-1:0]     spk_step,
    input  wire                     arr_clear,
    input  wire                     arr_we,
    input  wire [IN_INDEX_BITS-1:0] arr_index,
    input  wire [STEP_BITS-1:0]     arr_step,
    // one step of the rule
    input  wire                     start,
    input  wire [NEURON_BITS-1:0]   start_label,
    input  wire [STEP_BITS-1:0]     start_end_step,
    // the spike target (docs/learning-rule.md, section 6): over it with a decision at this step
    input  wire                     start_quiet,
    input  wire [STEP_BITS-1:0]     start_decision_step,
    output wire                     done,
    output reg  [WCOUNT_BITS-1:0]   weights_changed,
    output reg  [NDELTA_BITS-1:0]   neurons_with_delta,
    output reg                      bad_label,
    // the core's neuron state RAM: read port, fired flag of each lane of the word read
    output reg                      st_re,
    output reg  [SADDR_BITS-1:0]    st_raddr,
    input  wire [LANES-1:0]         st_fired,
    // the weight RAM port
    output reg                      w_en,
    output reg                      w_we,
    output reg  [WADDR_BITS-1:0]    w_addr,
    output reg  [LANES*WEIGHT_BITS-1:0] w_wdata,
    input  wire [LANES*WEIGHT_BITS-1:0] w_rdata
);
    localparam integer LB = (LANES > 1) ? $clog2(LANES) : 1;
    localparam integer OUT_I = N_LAYERS - 1;
    localparam [LAYER_BITS-1:0] OUT = OUT_I[LAYER_BITS-1:0];
    localparam integer PB = 17;                                  // probabilities: 0 .. 65536
    localparam integer DLW = LANES * (2 + STEP_BITS);            // delta word
    localparam integer RBW = GROUP_BITS + 3 * LANES;             // row buffer entry {g, c, cp, move}
    localparam integer RBA = GROUP_BITS + 1;                     // row buffer address {half, entry}
    localparam integer CNTB = (NEURON_BITS > LB ? NEURON_BITS : LB) + 2;   // vote counters
    localparam integer TAGW = 2 + LB + 1 + 1 + GROUP_BITS + 2 * LANES;
    localparam [1:0] K_DRAW = 2'd0, K_WORD = 2'd1, K_ROWEND = 2'd2, K_PREP = 2'd3;
    localparam [2:0] E_IDLE = 3'd0, E_WAIT = 3'd1, E_OUT = 3'd2, E_LSTART = 3'd3, E_LRUN = 3'd4;
    localparam [2:0] A_IDLE = 3'd0, A_FETCH = 3'd1, A_DESC = 3'd2, A_MUL1 = 3'd3, A_MUL2 = 3'd4,
                     A_GRP = 3'd5, A_END = 3'd6;
    localparam [2:0] B_IDLE = 3'd0, B_WAIT = 3'd1, B_RUN = 3'd2, B_END = 3'd3;
    localparam [1:0] KP_IDLE = 2'd0, KP_Y = 2'd1, KP_KEY = 2'd2, KP_DONE = 2'd3;
    localparam integer MC_I = MARGIN_STEPS < MAX_STEPS ? MARGIN_STEPS : MAX_STEPS;
    localparam [STEP_BITS:0] MC = MC_I[STEP_BITS:0];             // margin, capped (see OUT pass 2)
    localparam [WEIGHT_BITS-1:0] W_MIN = {1'b1, {(WEIGHT_BITS - 1){1'b0}}};
    localparam [WEIGHT_BITS-1:0] W_MAX = {1'b0, {(WEIGHT_BITS - 1){1'b1}}};
    localparam [PB-1:0] HID_P = HIDDEN_PROB_Q16[PB-1:0];
    localparam [PB-1:0] OUT_P = OUTPUT_PROB_Q16[PB-1:0];
    localparam [31:0] HALVING = PROB_HALVING_SAMPLES;
    localparam integer LAST_LANE_I = LANES - 1;
    localparam [LB-1:0] LAST_LANE = LAST_LANE_I[LB-1:0];
    localparam [ROW_BITS-1:0] N_IN_R = N_IN[ROW_BITS-1:0];

    function integer field(input [32*N_LAYERS-1:0] vec, input integer layer);
        field = vec[layer*32 +: 32];
    endfunction
    function [31:0] mul32(input [31:0] a, input [31:0] b);   // a * b modulo 2**32 (32-bit context)
        mul32 = a * b;
    endfunction
    function integer neuron_base(input integer layer);       // first spike-RAM entry of a layer
        integer l;
        begin
            neuron_base = 0;
            for (l = 0; l < layer; l = l + 1) neuron_base = neuron_base + field(LAYER_N_POST, l);
        end
    endfunction
    function integer weight_index_base(input integer layer);  // upload-stream index of W_k[0, 0]
        integer l;
        begin
            weight_index_base = 0;
            for (l = 0; l < layer; l = l + 1)
                weight_index_base = weight_index_base + (field(LAYER_N_PRE, l) + 1) * field(LAYER_N_POST, l);
        end
    endfunction
    localparam integer N_OUT_I = field(LAYER_N_POST, OUT_I);
    localparam [NEURON_BITS:0] N_OUT = N_OUT_I[NEURON_BITS:0];
    localparam integer LAST_OUT_I = N_OUT_I - 1;
    localparam [NEURON_BITS-1:0] LAST_OUT = LAST_OUT_I[NEURON_BITS-1:0];
    function [LANES-1:0] lowest(input [LANES-1:0] m);       // lowest set bit, one-hot
        lowest = m & (~m + 1'b1);
    endfunction
    function at_most_one(input [LANES-1:0] m);   // popcount(m) <= 1
        at_most_one = (m & (m - 1'b1)) == {LANES{1'b0}};
    endfunction
    function [LB-1:0] lane_of(input [LANES-1:0] onehot);
        integer l;
        begin
            lane_of = {LB{1'b0}};
            for (l = 0; l < LANES; l = l + 1)
                if (onehot[l]) lane_of = l[LB-1:0];
        end
    endfunction
    function [LANES-1:0] onehot_of(input [LB-1:0] lane);
        integer l;
        begin
            for (l = 0; l < LANES; l = l + 1) onehot_of[l] = (lane == l[LB-1:0]);
        end
    endfunction
    function [LB:0] ones(input [LANES-1:0] m);
        integer l;
        begin
            ones = {(LB + 1){1'b0}};
            for (l = 0; l < LANES; l = l + 1) ones = ones + {{LB{1'b0}}, m[l]};
        end
    endfunction

    // Width-safe resizes (zero-extend or cut; every value that goes through one fits the target).
    function [SADDR_BITS-1:0] s_of_g(input [GROUP_BITS-1:0] g);
        integer i;
        begin
            s_of_g = {SADDR_BITS{1'b0}};
            for (i = 0; i < SADDR_BITS && i < GROUP_BITS; i = i + 1) s_of_g[i] = g[i];
        end
    endfunction
    function [WADDR_BITS-1:0] w_of_g(input [GROUP_BITS-1:0] g);
        integer i;
        begin
            w_of_g = {WADDR_BITS{1'b0}};
            for (i = 0; i < WADDR_BITS && i < GROUP_BITS; i = i + 1) w_of_g[i] = g[i];
        end
    endfunction
    function [NEURON_ADDR_BITS-1:0] n_of_r(input [ROW_BITS-1:0] r);
        integer i;
        begin
            n_of_r = {NEURON_ADDR_BITS{1'b0}};
            for (i = 0; i < NEURON_ADDR_BITS && i < ROW_BITS; i = i + 1) n_of_r[i] = r[i];
        end
    endfunction
    function [NEURON_ADDR_BITS-1:0] n_of_j(input [NEURON_BITS-1:0] j);
        integer i;
        begin
            n_of_j = {NEURON_ADDR_BITS{1'b0}};
            for (i = 0; i < NEURON_ADDR_BITS && i < NEURON_BITS; i = i + 1) n_of_j[i] = j[i];
        end
    endfunction
    function [15:0] m_of_r(input [ROW_BITS-1:0] r);
        integer i;
        begin
            m_of_r = 16'd0;
            for (i = 0; i < 16 && i < ROW_BITS; i = i + 1) m_of_r[i] = r[i];
        end
    endfunction
    function [ROW_BITS-1:0] r_of_i(input [IN_INDEX_BITS-1:0] x);
        integer i;
        begin
            r_of_i = {ROW_BITS{1'b0}};
            for (i = 0; i < ROW_BITS && i < IN_INDEX_BITS; i = i + 1) r_of_i[i] = x[i];
        end
    endfunction
    function [IN_INDEX_BITS-1:0] i_of_r(input [ROW_BITS-1:0] r);
        integer i;
        begin
            i_of_r = {IN_INDEX_BITS{1'b0}};
            for (i = 0; i < ROW_BITS && i < IN_INDEX_BITS; i = i + 1) i_of_r[i] = r[i];
        end
    endfunction
    function [CNTB-1:0] c_of_n(input [LB:0] x);
        integer i;
        begin
            c_of_n = {CNTB{1'b0}};
            for (i = 0; i < CNTB && i <= LB; i = i + 1) c_of_n[i] = x[i];
        end
    endfunction
    function [WCOUNT_BITS-1:0] wc_of_n(input [LB:0] x);
        integer i;
        begin
            wc_of_n = {WCOUNT_BITS{1'b0}};
            for (i = 0; i < WCOUNT_BITS && i <= LB; i = i + 1) wc_of_n[i] = x[i];
        end
    endfunction

    initial begin
        if (ROW_BITS > 16)
            $fatal(1, "pcl_learn: ROW_BITS %0d > 16: the row index is a 16-bit multiplier operand", ROW_BITS);
        if (NEURONS != neuron_base(N_LAYERS) || NEURONS > (1 << NEURON_ADDR_BITS))
            $fatal(1, "pcl_learn: NEURONS %0d / NEURON_ADDR_BITS %0d disagree with the layers", NEURONS,
                   NEURON_ADDR_BITS);
        if (weight_index_base(N_LAYERS) >= (1 << WCOUNT_BITS) || NEURONS >= (1 << NDELTA_BITS))
            $fatal(1, "pcl_learn: WCOUNT_BITS %0d or NDELTA_BITS %0d too narrow", WCOUNT_BITS, NDELTA_BITS);
        if (MARGIN_STEPS < 1 || HIDDEN_PROB_Q16 < 0 || HIDDEN_PROB_Q16 > 65536 || OUTPUT_PROB_Q16 < 0
            || OUTPUT_PROB_Q16 > 65536 || PROB_HALVING_SAMPLES < 0)
            $fatal(1, "pcl_learn: MARGIN_STEPS >= 1, probabilities in 0..65536, PROB_HALVING_SAMPLES >= 0");
        if ((ALL_VIOLATORS != 0 && ALL_VIOLATORS != 1) || (CORRECT_ALWAYS != 0 && CORRECT_ALWAYS != 1))
            $fatal(1, "pcl_learn: ALL_VIOLATORS and CORRECT_ALWAYS are 0 or 1");
    end

    // ------------------------------------------------------------------ per-layer constants
    localparam [31:0] GROUP_IM = mul32(LANES, INDEX_MUL);
    wire [NEURON_ADDR_BITS-1:0] nbase [0:N_LAYERS-1];
    wire [SADDR_BITS-1:0] sbase [0:N_LAYERS-1];
    wire [GROUP_BITS-1:0] last_group [0:N_LAYERS-1];
    wire [ROW_BITS-1:0] npre [0:N_LAYERS-1];
    wire [31:0] woff_im [0:N_LAYERS-1];   // key offset of layer k: (its first weight's index) * INDEX_MUL
    wire [31:0] row_im [0:N_LAYERS-1];    // per row: n_post * INDEX_MUL
    wire [31:0] woff_down [0:N_LAYERS-1]; // WOFF_IM[k-1] - WOFF_IM[k] (k >= 1)
    wire [31:0] lane_im [0:LANES-1];
    genvar gk;
    generate
        for (gk = 0; gk < N_LAYERS; gk = gk + 1) begin : g_layer
            localparam integer NB = neuron_base(gk);
            localparam integer SB = field(LAYER_STATE_BASE, gk);
            localparam integer LG = field(LAYER_GROUPS, gk) - 1;
            localparam integer NP = field(LAYER_N_PRE, gk);
            localparam [31:0] WI = weight_index_base(gk);
            localparam [31:0] NPOST = field(LAYER_N_POST, gk);
            assign nbase[gk] = NB[NEURON_ADDR_BITS-1:0];
            assign sbase[gk] = SB[SADDR_BITS-1:0];
            assign last_group[gk] = LG[GROUP_BITS-1:0];
            assign npre[gk] = NP[ROW_BITS-1:0];
            assign woff_im[gk] = mul32(WI, INDEX_MUL);
            assign row_im[gk] = mul32(NPOST, INDEX_MUL);
            if (gk > 0) begin : g_down
                assign woff_down[gk] = mul32(weight_index_base(gk - 1), INDEX_MUL) - mul32(WI, INDEX_MUL);
            end else begin : g_down0
                assign woff_down[gk] = 32'd0;
            end
        end
        for (gk = 0; gk < LANES; gk = gk + 1) begin : g_lane
            localparam [31:0] L32 = gk;
            assign lane_im[gk] = mul32(L32, INDEX_MUL);
        end
    endgenerate

    // ------------------------------------------------------------------ state
    reg [2:0] estate, astate, bstate;
    reg [1:0] kp;
    reg [LAYER_BITS-1:0] kk;
    wire [LAYER_BITS-1:0] km1 = kk - 1'b1;
    reg [NEURON_BITS-1:0] label_r;
    reg [STEP_BITS-1:0] e_step;
    reg [N_LAYERS-1:0] active;            // layer has a neuron with a delta
    reg [PB-1:0] pk;                      // this layer's probability
    reg fast;                             // pk is 0 or 65536 (never / always): no draw needed
    wire [PB-1:0] p_next;
    reg [31:0] rowim;
    // keyb = key + WOFF_IM[k] for the layer in work: set when the key is ready (output layer),
    // moved by the constant WOFF_IM[k-1] - WOFF_IM[k] from layer to layer.
    reg [31:0] keyb;

    // prepared from the request: p >> min(31, t / HALVING) by repeated subtraction (17 at most:
    // p <= 65536 is 0 after 17 halvings)
    reg [31:0] hv_rem;
    reg [4:0] hv_n;
    reg hv_busy;
    reg [PB-1:0] ph, po;
    wire [32:0] hv_diff = {1'b0, hv_rem} - {1'b0, HALVING};
    wire prep_done = (kp == KP_DONE) && !hv_busy;
    assign p_next = (kk == OUT) ? po : ph;

    // ------------------------------------------------------------------ recording RAMs
    reg [ROW_BITS-1:0] arr_cnt;
    wire [IN_INDEX_BITS-1:0] arr_waddr = i_of_r(arr_cnt);
    wire spk_re_w;
    wire [NEURON_ADDR_BITS-1:0] spk_raddr_w;
    wire [STEP_BITS-1:0] spk_rdata;
    pcl_ram_sdp #(.WIDTH(STEP_BITS), .DEPTH(NEURONS), .ADDR_BITS(NEURON_ADDR_BITS)) u_spikes (
        .clk(clk), .we(spk_we), .waddr(nbase[spk_layer] + n_of_j(spk_index)),
        .wdata(spk_step), .re(spk_re_w), .raddr(spk_raddr_w), .rdata(spk_rdata));
    wire arr_re_w;
    wire [IN_INDEX_BITS-1:0] arr_raddr_w;
    wire [IN_INDEX_BITS+STEP_BITS-1:0] arr_rdata;
    pcl_ram_sdp #(.WIDTH(IN_INDEX_BITS + STEP_BITS), .DEPTH(N_IN), .ADDR_BITS(IN_INDEX_BITS)) u_arrivals (
        .clk(clk), .we(arr_we && (arr_cnt < N_IN_R)), .waddr(arr_waddr),
        .wdata({arr_index, arr_step}), .re(arr_re_w), .raddr(arr_raddr_w), .rdata(arr_rdata));

    // delta words: {deadline[LANES], minus[LANES], plus[LANES]} per group, at the group's state address
    wire dl_we;
    wire [SADDR_BITS-1:0] dl_waddr;
    wire [DLW-1:0] dl_wdata;
    wire dl_re;
    wire [SADDR_BITS-1:0] dl_raddr;
    wire [DLW-1:0] dl_rdata;
    pcl_ram_sdp #(.WIDTH(DLW), .DEPTH(STATE_DEPTH), .ADDR_BITS(SADDR_BITS)) u_deltas (
        .clk(clk), .we(dl_we), .waddr(dl_waddr), .wdata(dl_wdata), .re(dl_re), .raddr(dl_raddr), .rdata(dl_rdata));

    // row buffer: {g, c, cp, move} per queued weight word, two halves
    wire rb_we;
    wire [RBA-1:0] rb_waddr;
    wire [RBW-1:0] rb_wdata;
    reg rb_re;
    reg [RBA-1:0] rb_raddr;
    wire [RBW-1:0] rb_rdata;
    pcl_ram_sdp #(.WIDTH(RBW), .DEPTH(1 << RBA), .ADDR_BITS(RBA)) u_rows (
        .clk(clk), .we(rb_we), .waddr(rb_waddr), .wdata(rb_wdata), .re(rb_re), .raddr(rb_raddr), .rdata(rb_rdata));

    // ------------------------------------------------------------------ the draw
    reg tok_v, tok_last, tok_half, tok_salt;
    reg [1:0] tok_kind;
    reg [31:0] tok_base;
    reg [LB-1:0] tok_lane;
    reg [GROUP_BITS-1:0] tok_g;
    reg [LANES-1:0] tok_c, tok_cp;
    wire mx_v;
    wire [31:0] mx_u;
    wire mx_pass;   // (mx_u >> 16) < pk, registered with mx_u
    wire [TAGW-1:0] mx_tag;
    pcl_mix32 #(.MIX_MUL_1(MIX_MUL_1), .MIX_MUL_2(MIX_MUL_2), .TAG_BITS(TAGW)) u_mix (
        .clk(clk), .rst(rst), .in_valid(tok_v), .in_x(tok_base + (tok_salt ? SAMPLE_SALT : lane_im[tok_lane])),
        .in_tag({tok_kind, tok_lane, tok_last, tok_half, tok_g, tok_c, tok_cp}),
        .p_q16(pk), .out_valid(mx_v), .out_u(mx_u), .out_below(mx_pass), .out_tag(mx_tag));
    wire [1:0] mx_kind = mx_tag[TAGW-1 -: 2];
    wire [LB-1:0] mx_lane = mx_tag[TAGW-3 -: LB];
    wire mx_last = mx_tag[2 * LANES + GROUP_BITS + 1];
    wire mx_half = mx_tag[2 * LANES + GROUP_BITS];
    wire [GROUP_BITS-1:0] mx_g = mx_tag[2 * LANES +: GROUP_BITS];
    wire [LANES-1:0] mx_c = mx_tag[LANES +: LANES];
    wire [LANES-1:0] mx_cp = mx_tag[0 +: LANES];
    reg [LANES-1:0] mv_acc;   // move bits of the word whose draws are coming back
    wire [LANES-1:0] mx_onehot = onehot_of(mx_lane);
    wire [LANES-1:0] mx_move = (mx_kind == K_WORD) ? ((pk != {PB{1'b0}}) ? mx_c : {LANES{1'b0}})
                                                   : (mv_acc | (mx_pass ? mx_onehot : {LANES{1'b0}}));
    // A word is queued for the back end when its draws are in and it must be read: it moves, or
    // its sign bits vote (a neuron row of a layer k >= 1).
    wire mx_word_done = mx_v && (mx_kind == K_WORD || (mx_kind == K_DRAW && mx_last));
    assign rb_we = mx_word_done && (mx_move != {LANES{1'b0}} || (kk != 0 && !ri_bias[mx_half]));
    assign rb_waddr = {mx_half, cnt[mx_half]};
    assign rb_wdata = {mx_g, mx_c, mx_cp, mx_move};

    // ------------------------------------------------------------------ output deltas (E_OUT)
    reg [1:0] opass;
    reg o_iss;
    reg [NEURON_BITS-1:0] oj;
    reg [GROUP_BITS-1:0] og;
    reg [LB-1:0] ol;
    reg rd_v, rd_last;
    reg [NEURON_BITS-1:0] rd_j;
    reg [GROUP_BITS-1:0] rd_g;
    reg [LB-1:0] rd_l;
    reg [STEP_BITS-1:0] sc, s_e;
    reg cf, anyv, have_e;
    reg quiet_r;                      // over the spike target this step
    reg [STEP_BITS-1:0] d_step;       // the decision step D (meaningful when quiet_r)
    reg [NEURON_BITS-1:0] e_idx;
    wire rd_fired = st_fired[rd_l];
    // Pass 1 judges each output (violator: fired, not the label, and before s_c + margin) and
    // shifts the verdict into viol_sr; pass 2 shifts them out in the same order, so its delta
    // (into neurons_with_delta) hangs on a register, not on the margin compare. sc_margin is
    // registered from sc (set in pass 0, two cycles before pass 1's first data).
    reg [STEP_BITS:0] sc_margin;
    reg [N_OUT_I-1:0] viol_sr;
    wire o_viol = rd_fired && (rd_j != label_r) && (!cf || {1'b0, spk_rdata} < sc_margin);
    wire [N_OUT_I:0] viol_cat = {o_viol && opass == 2'd1, viol_sr};   // shifted in: viol_cat[N_OUT_I:1]
    wire unused_viol_out = viol_cat[0];                                 // = viol_sr[0], read as o_plus
    wire o_plus = viol_sr[0] && (ALL_VIOLATORS != 0 || rd_j == e_idx);
    wire o_minus = (rd_j == label_r) && (anyv || !cf || CORRECT_ALWAYS != 0);

    // ------------------------------------------------------------------ delta-word assembly
    reg [DLW-1:0] dl_acc;
    reg asm_v, asm_p, asm_m, asm_flush;
    reg [LB-1:0] asm_lane;
    reg [STEP_BITS-1:0] asm_dl;
    reg [SADDR_BITS-1:0] asm_addr;
    reg [DLW-1:0] asm_word;
    integer ai;
    assign dl_we = asm_v && asm_flush;
    assign dl_waddr = asm_addr;
    assign dl_wdata = asm_word;
    always @* begin
        asm_word = dl_acc;
        for (ai = 0; ai < LANES; ai = ai + 1) begin
            if (asm_lane == ai[LB-1:0]) begin
                asm_word[ai] = asm_p;
                asm_word[LANES + ai] = asm_m;
                asm_word[2 * LANES + ai * STEP_BITS +: STEP_BITS] = asm_dl;
            end
        end
    end

    // ------------------------------------------------------------------ front end (A)
    reg [ROW_BITS-1:0] ar;                // next row: neuron h of layer k-1, or arrival entry
    reg [GROUP_BITS-1:0] agh;
    reg [LB-1:0] alh;
    reg a_bias, a_cur_bias, ah;
    reg [1:0] busy, ready;
    reg [GROUP_BITS-1:0] cnt [0:1];
    reg [ROW_BITS-1:0] ri_r [0:1];
    reg [STEP_BITS-1:0] ri_s [0:1];
    reg ri_arr [0:1];
    reg ri_bias [0:1];
    reg [STEP_BITS-1:0] arow;
    reg [15:0] r16;
    reg [31:0] prod, x1;
    // Group pipeline of a row: issue (read group g1's delta word), L (the word in the RAM's output
    // register, valid lv: it holds until the next read), E (the word being emitted, ev: one
    // draw per causal lane, or one token per word when no draw is needed). Every decision to
    // read depends on registers only: a word moves from L to E when E is free, and only then
    // is the next word read.
    reg [GROUP_BITS-1:0] g1, gl, ge;
    reg g1_done, lv, ev;
    reg [31:0] xl, xe;
    reg [LANES-1:0] erem, ec, ecp;
    reg erem_one;                         // at most one lane left in erem: E's word ends this cycle
    wire [ROW_BITS-1:0] nrows = (kk != 0) ? npre[kk] : arr_cnt;
    // Causal lanes of the word read for the current row (stage 2's load cycle).
    reg [LANES-1:0] c_ld;
    integer ci;
    always @* begin
        for (ci = 0; ci < LANES; ci = ci + 1)
            c_ld[ci] = (dl_rdata[ci] || dl_rdata[LANES + ci])
                       && (arow <= dl_rdata[2 * LANES + ci * STEP_BITS +: STEP_BITS]);
    end
    wire [LANES-1:0] cp_ld = c_ld & dl_rdata[LANES-1:0];
    wire [LANES-1:0] e_lo = lowest(erem);
    wire [LANES-1:0] e_rest = erem & ~e_lo;
    wire e_free = !ev || fast || erem_one;   // E takes a new word next cycle
    wire l_take = lv && e_free;
    wire s1_issue = (astate == A_GRP) && !g1_done && (!lv || l_take);
    wire a_fetch_neuron = (astate == A_FETCH) && !busy[ah] && !a_bias && (kk != 0);
    wire a_fetch_arrival = (astate == A_FETCH) && !busy[ah] && !a_bias && (kk == 0);

    // ------------------------------------------------------------------ back end (B)
    reg bh;
    reg [GROUP_BITS-1:0] bi, bcnt;
    reg [ROW_BITS-1:0] bhc;
    reg [STEP_BITS-1:0] b_s;
    reg b_arr, b_bias;
    reg [GROUP_BITS-1:0] bgb;
    reg [LB-1:0] blb;
    reg [WADDR_BITS-1:0] row_base;
    // Weight-word pipeline: R (the read is issued: the word's tags and address are registered
    // into e_*), C (the word is on w_rdata: its sign bits vote; the word and tags are registered
    // into q_*), W (a word with a moving lane is written back from q_*: the saturating step never
    // sees the RAM's output directly). The write has the port; reads fill the other cycles, so
    // words that move take two port cycles each and words that only vote one.
    reg e_v;
    reg [WADDR_BITS-1:0] e_addr;
    reg [LANES-1:0] e_c, e_cp, e_mv;
    reg q_w;
    reg [WADDR_BITS-1:0] q_addr;
    reg [LANES-1:0] q_cp, q_mv;
    reg [LANES*WEIGHT_BITS-1:0] q_word;
    reg [CNTB-1:0] pcnt, mcnt;
    wire [GROUP_BITS-1:0] ent_g = rb_rdata[3 * LANES +: GROUP_BITS];
    wire b_more = (bi != bcnt);
    wire b_votes = (kk != 0) && !b_bias;
    wire b_idle = quiet_r && (pcnt == mcnt) && (b_s < d_step);   // a tie over the spike target
    // The row's address: LAYER_WEIGHT_BASE[k] + (r << LAYER_ROW_SHIFT[k]) (a shift, as in the core).
    wire [WADDR_BITS-1:0] row_addr [0:N_LAYERS-1];
    generate
        for (gk = 0; gk < N_LAYERS; gk = gk + 1) begin : g_rowaddr
            localparam [WADDR_BITS-1:0] WB = LAYER_WEIGHT_BASE[gk*32 +: WADDR_BITS];
            localparam integer SH = LAYER_ROW_SHIFT[gk*32 +: 32];
            wire [WADDR_BITS-1:0] offset = {{(WADDR_BITS - ROW_BITS){1'b0}}, ri_r[bh]} << SH;
            assign row_addr[gk] = WB + offset;
        end
    endgenerate
    // Stage C: the votes of the sign bits of the word read (S = the old sign bits).
    reg [LANES-1:0] sgn, vote_p, vote_m;
    integer wi;
    always @* begin
        for (wi = 0; wi < LANES; wi = wi + 1) begin
            sgn[wi] = w_rdata[wi * WEIGHT_BITS + WEIGHT_BITS - 1];
            vote_p[wi] = e_c[wi] && (e_cp[wi] ^ sgn[wi]);
            vote_m[wi] = e_c[wi] && !(e_cp[wi] ^ sgn[wi]);
        end
    end
    // Stage W: the updated word, w -= delta saturated (a lane at its bound is written unchanged).
    reg [LANES-1:0] chg;
    reg [LANES*WEIGHT_BITS-1:0] new_word;
    reg [WEIGHT_BITS-1:0] wv;
    always @* begin
        new_word = q_word;
        for (wi = 0; wi < LANES; wi = wi + 1) begin
            wv = q_word[wi * WEIGHT_BITS +: WEIGHT_BITS];
            chg[wi] = q_mv[wi] && (q_cp[wi] ? (wv != W_MIN) : (wv != W_MAX));
            if (chg[wi]) new_word[wi * WEIGHT_BITS +: WEIGHT_BITS] = q_cp[wi] ? wv - 1'b1 : wv + 1'b1;
        end
    end
    // Every port decision depends on registers only, not on the data read.
    wire b_write = q_w;
    wire b_consume = (bstate == B_RUN) && b_more && !b_write;

    // ------------------------------------------------------------------ RAM ports (combinational)
    assign spk_re_w = ((estate == E_OUT) && o_iss) || a_fetch_neuron;
    assign spk_raddr_w = (estate == E_OUT)
        ? nbase[OUT] + n_of_j(oj)
        : nbase[km1] + n_of_r(ar);
    assign arr_re_w = a_fetch_arrival;
    assign arr_raddr_w = i_of_r(ar);
    assign dl_re = s1_issue;
    assign dl_raddr = sbase[kk] + s_of_g(g1);
    always @* begin
        st_re = 1'b0;
        st_raddr = sbase[km1] + s_of_g(agh);
        if (estate == E_OUT) begin
            st_re = o_iss;
            st_raddr = sbase[OUT] + s_of_g(og);
        end else if (a_fetch_neuron) begin
            st_re = 1'b1;
        end
        rb_re = 1'b0;
        rb_raddr = {bh, bi};
        if (bstate == B_WAIT && ready[bh] && cnt[bh] != {GROUP_BITS{1'b0}}) begin
            rb_re = 1'b1;
            rb_raddr = {bh, {GROUP_BITS{1'b0}}};
        end else if (b_consume && (bi + 1'b1 != bcnt)) begin
            rb_re = 1'b1;
            rb_raddr = {bh, bi + 1'b1};
        end
        w_en = 1'b0;
        w_we = 1'b0;
        w_addr = b_write ? q_addr : row_base + w_of_g(ent_g);
        w_wdata = new_word;
        if (b_write) begin
            w_en = 1'b1;
            w_we = 1'b1;
        end else if (b_consume) begin
            w_en = 1'b1;
        end
    end

    reg start_q;
    assign done = (estate == E_IDLE) && !start_q;

    // ------------------------------------------------------------------ sequencing
    always @(posedge clk) begin
        tok_v <= 1'b0;
        tok_salt <= 1'b0;
        asm_v <= 1'b0;
        prod <= r16 * rowim;
        start_q <= start && (estate == E_IDLE);

        // --- the arrival list (reset with each image)
        if (arr_clear) arr_cnt <= {ROW_BITS{1'b0}};
        else if (arr_we && (arr_cnt < N_IN_R)) arr_cnt <= arr_cnt + 1'b1;

        // --- key and probabilities, from the request
        if (prep) begin
            tok_v <= 1'b1;
            tok_kind <= K_PREP;
            tok_base <= prep_index;   // + SAMPLE_SALT at the mix input
            tok_salt <= 1'b1;
            tok_lane <= {LB{1'b0}};
            kp <= KP_Y;
            hv_rem <= prep_index;
            hv_n <= 5'd0;
            hv_busy <= (PROB_HALVING_SAMPLES != 0);
            ph <= HID_P;
            po <= OUT_P;
        end else begin
            if (mx_v && mx_kind == K_PREP) begin
                if (kp == KP_Y) begin
                    tok_v <= 1'b1;
                    tok_kind <= K_PREP;
                    tok_base <= LEARN_SEED ^ mx_u;
                    tok_lane <= {LB{1'b0}};
                    kp <= KP_KEY;
                end else if (kp == KP_KEY) begin
                    keyb <= mx_u + woff_im[OUT];
                    kp <= KP_DONE;
                end
            end
            if (hv_busy) begin
                if (hv_n != 5'd17 && !hv_diff[32]) begin
                    hv_rem <= hv_diff[31:0];
                    hv_n <= hv_n + 1'b1;
                    ph <= ph >> 1;
                    po <= po >> 1;
                end else begin
                    hv_busy <= 1'b0;
                end
            end
        end

        // --- delta-word assembly (output pass 3, back end); the word is written when complete
        if (asm_v) dl_acc <= asm_flush ? {DLW{1'b0}} : asm_word;

        case (estate)
            // The request is latched from start_q; the step's counters are cleared and the label
            // checked in E_WAIT (few enables hang on start_q).
            E_IDLE: if (start_q) begin
                label_r <= start_label;
                e_step <= start_end_step;
                quiet_r <= start_quiet;
                d_step <= start_decision_step;
                estate <= E_WAIT;
            end
            E_WAIT: begin
                weights_changed <= {WCOUNT_BITS{1'b0}};
                neurons_with_delta <= {NDELTA_BITS{1'b0}};
                active <= {N_LAYERS{1'b0}};
                dl_acc <= {DLW{1'b0}};
                bad_label <= ({1'b0, label_r} >= N_OUT);
                if ({1'b0, label_r} >= N_OUT) estate <= E_IDLE;
                else if (prep_done) begin
                    estate <= E_OUT;
                    opass <= 2'd0;
                    o_iss <= 1'b1;
                    oj <= {NEURON_BITS{1'b0}};
                    og <= {GROUP_BITS{1'b0}};
                    ol <= {LB{1'b0}};
                    rd_v <= 1'b0;
                    cf <= 1'b0;
                    anyv <= 1'b0;
                    have_e <= 1'b0;
                end
            end
            E_OUT: begin
                // issue: one output neuron per cycle (spike RAM and its group's fired flags)
                rd_v <= o_iss;
                rd_j <= oj;
                rd_g <= og;
                rd_l <= ol;
                rd_last <= (oj == LAST_OUT);
                if (o_iss) begin
                    if (oj == LAST_OUT) o_iss <= 1'b0;
                    oj <= oj + 1'b1;
                    if (ol == LAST_LANE) begin
                        ol <= {LB{1'b0}};
                        og <= og + 1'b1;
                    end else begin
                        ol <= ol + 1'b1;
                    end
                end
                // data: pass 0 finds the correct output, 1 the violators, 2 writes the deltas
                sc_margin <= {1'b0, sc} + MC;
                if (rd_v && opass != 2'd0) viol_sr <= viol_cat[N_OUT_I:1];
                if (rd_v) begin
                    case (opass)
                        2'd0: if (rd_j == label_r) begin
                            sc <= spk_rdata;
                            cf <= rd_fired;
                        end
                        2'd1: if (o_viol) begin
                            anyv <= 1'b1;
                            if (!have_e || spk_rdata < s_e) begin
                                have_e <= 1'b1;
                                e_idx <= rd_j;
                                s_e <= spk_rdata;
                            end
                        end
                        default: begin
                            asm_v <= 1'b1;
                            asm_lane <= rd_l;
                            asm_p <= o_plus;
                            asm_m <= o_minus;
                            asm_dl <= rd_fired ? spk_rdata : e_step;
                            asm_flush <= rd_last || (rd_l == LAST_LANE);
                            asm_addr <= sbase[OUT] + s_of_g(rd_g);
                            if (o_plus || o_minus) begin
                                neurons_with_delta <= neurons_with_delta + 1'b1;
                                active[OUT] <= 1'b1;
                            end
                        end
                    endcase
                    if (rd_last) begin
                        if (opass == 2'd2) begin
                            estate <= E_LSTART;
                            kk <= OUT;
                        end else begin
                            opass <= opass + 1'b1;
                            o_iss <= 1'b1;
                            oj <= {NEURON_BITS{1'b0}};
                            og <= {GROUP_BITS{1'b0}};
                            ol <= {LB{1'b0}};
                        end
                    end
                end
            end
            E_LSTART: begin
                pk <= p_next;
                fast <= (p_next == {PB{1'b0}}) || p_next[PB-1];
                rowim <= row_im[kk];
                // Layer 0 with p = 0 changes nothing and feeds no layer below: skip it.
                if (!(active[kk] || (quiet_r && kk != 0)) || (kk == 0 && p_next == {PB{1'b0}})) begin
                    estate <= E_IDLE;
                end else begin
                    estate <= E_LRUN;
                    astate <= A_FETCH;
                    bstate <= B_WAIT;
                    ar <= {ROW_BITS{1'b0}};
                    agh <= {GROUP_BITS{1'b0}};
                    alh <= {LB{1'b0}};
                    a_bias <= (nrows == {ROW_BITS{1'b0}});
                    ah <= 1'b0;
                    bh <= 1'b0;
                    busy <= 2'b00;
                    ready <= 2'b00;
                    bhc <= {ROW_BITS{1'b0}};
                    bgb <= {GROUP_BITS{1'b0}};
                    blb <= {LB{1'b0}};
                    pcnt <= {CNTB{1'b0}};
                    mcnt <= {CNTB{1'b0}};
                end
            end
            default: ;   // E_LRUN: the front and back ends below
        endcase

        // --- front end: rows, their delta words, causal lanes, draws
        if (estate == E_LRUN) begin
            case (astate)
                A_FETCH: if (!busy[ah]) begin
                    busy[ah] <= 1'b1;
                    cnt[ah] <= {GROUP_BITS{1'b0}};
                    if (a_bias) begin
                        ri_r[ah] <= npre[kk];
                        ri_arr[ah] <= 1'b1;
                        ri_s[ah] <= {STEP_BITS{1'b0}};
                        ri_bias[ah] <= 1'b1;
                        a_cur_bias <= 1'b1;
                        r16 <= m_of_r(npre[kk]);
                        arow <= {STEP_BITS{1'b0}};
                        astate <= A_MUL1;
                    end else begin
                        astate <= A_DESC;   // the read was issued this cycle (combinational above)
                    end
                end
                A_DESC: begin
                    ri_bias[ah] <= 1'b0;
                    a_cur_bias <= 1'b0;
                    ar <= ar + 1'b1;
                    if (ar + 1'b1 == nrows) a_bias <= 1'b1;
                    if (kk != 0) begin
                        ri_r[ah] <= ar;
                        ri_s[ah] <= spk_rdata;
                        ri_arr[ah] <= st_fired[alh] && (spk_rdata < e_step);
                        r16 <= m_of_r(ar);
                        arow <= spk_rdata + 1'b1;
                        if (alh == LAST_LANE) begin
                            alh <= {LB{1'b0}};
                            agh <= agh + 1'b1;
                        end else begin
                            alh <= alh + 1'b1;
                        end
                    end else begin
                        ri_r[ah] <= r_of_i(arr_rdata[STEP_BITS +: IN_INDEX_BITS]);
                        ri_s[ah] <= {STEP_BITS{1'b0}};
                        ri_arr[ah] <= 1'b1;
                        r16 <= m_of_r(r_of_i(arr_rdata[STEP_BITS +: IN_INDEX_BITS]));
                        arow <= arr_rdata[STEP_BITS-1:0];
                    end
                    if (kk != 0 && !(st_fired[alh] && (spk_rdata < e_step))) begin
                        tok_v <= 1'b1;             // did not arrive: an empty row
                        tok_kind <= K_ROWEND;
                        tok_half <= ah;
                        ah <= !ah;
                        astate <= A_FETCH;
                    end else begin
                        astate <= A_MUL1;
                    end
                end
                A_MUL1: astate <= A_MUL2;          // prod = r16 * rowim
                A_MUL2: begin                      // the row's draw base: keyb + r * ROW_IM
                    x1 <= keyb + prod;
                    astate <= A_GRP;
                    g1 <= {GROUP_BITS{1'b0}};
                    g1_done <= 1'b0;
                    lv <= 1'b0;
                    ev <= 1'b0;
                end
                A_GRP: begin
                    // E: emit one token (from registers)
                    if (ev) begin
                        tok_v <= 1'b1;
                        tok_half <= ah;
                        tok_g <= ge;
                        tok_c <= ec;
                        tok_cp <= ecp;
                        tok_base <= xe;
                        tok_kind <= fast ? K_WORD : K_DRAW;
                        tok_lane <= lane_of(e_lo);
                        tok_last <= erem_one;
                        erem <= e_rest;
                        erem_one <= at_most_one(e_rest);
                        if (e_free) ev <= 1'b0;
                    end
                    // L -> E: the causal lanes of the word read (a word without any is dropped)
                    // (E's registers are loaded whatever c_ld is: they are read only while ev is high,
                    // so only ev waits for the causal test)
                    if (l_take) begin
                        lv <= 1'b0;
                        ev <= (c_ld != {LANES{1'b0}});
                        erem <= c_ld;
                        erem_one <= at_most_one(c_ld);
                        ec <= c_ld;
                        ecp <= cp_ld;
                        ge <= gl;
                        xe <= xl;
                    end
                    // issue: read the next group's delta word into L
                    if (s1_issue) begin
                        lv <= 1'b1;
                        gl <= g1;
                        xl <= x1;
                        g1 <= g1 + 1'b1;
                        if (g1 == last_group[kk]) g1_done <= 1'b1;
                        x1 <= x1 + GROUP_IM;
                    end
                    if (g1_done && !lv && !ev) astate <= A_END;
                end
                A_END: begin
                    tok_v <= 1'b1;
                    tok_kind <= K_ROWEND;
                    tok_half <= ah;
                    ah <= !ah;
                    astate <= a_cur_bias ? A_IDLE : A_FETCH;
                end
                default: ;
            endcase
        end

        // --- the draws come back in order: queue each word that must be read (rb_we above)
        if (mx_v && mx_kind == K_ROWEND) ready[mx_half] <= 1'b1;
        if (mx_v && mx_kind == K_DRAW) mv_acc <= mx_last ? {LANES{1'b0}} : mx_move;
        if (rb_we) cnt[mx_half] <= cnt[mx_half] + 1'b1;

        // --- back end: read each queued word (votes), write it back changed
        // the weight-word pipeline: R -> C -> W (one stage a cycle, never stalled)
        e_v <= b_consume;
        q_w <= e_v && (e_mv != {LANES{1'b0}});
        if (e_v) begin
            q_word <= w_rdata;
            q_addr <= e_addr;
            q_cp <= e_cp;
            q_mv <= e_mv;
        end
        if (q_w) weights_changed <= weights_changed + wc_of_n(ones(chg));
        if (estate == E_LRUN) begin
            if (b_consume) begin
                e_c <= rb_rdata[2 * LANES +: LANES];
                e_cp <= rb_rdata[LANES +: LANES];
                e_mv <= rb_rdata[0 +: LANES];
                e_addr <= row_base + w_of_g(ent_g);
                bi <= bi + 1'b1;
            end
            if (e_v && b_votes) begin
                pcnt <= pcnt + c_of_n(ones(vote_p));
                mcnt <= mcnt + c_of_n(ones(vote_m));
            end
            case (bstate)
                B_WAIT: if (ready[bh]) begin
                    b_s <= ri_s[bh];
                    b_arr <= ri_arr[bh];
                    b_bias <= ri_bias[bh];
                    bcnt <= cnt[bh];
                    bi <= {GROUP_BITS{1'b0}};
                    row_base <= row_addr[kk];
                    bstate <= (cnt[bh] == {GROUP_BITS{1'b0}}) ? B_END : B_RUN;
                end
                // The last word was read when b_more falls: it votes in this cycle (stage C), and
                // if it moves it is written in B_END (stage W), before the next row's first read.
                B_RUN: if (!b_more) bstate <= B_END;
                B_END: begin
                    if (b_votes) begin   // neuron h = bhc of layer k-1: its delta into the delta word
                        asm_v <= 1'b1;
                        asm_lane <= blb;
                        asm_p <= b_arr && (pcnt > mcnt || b_idle);
                        asm_m <= b_arr && (mcnt > pcnt);
                        asm_dl <= b_s;
                        asm_flush <= (blb == LAST_LANE) || (bhc + 1'b1 == npre[kk]);
                        asm_addr <= sbase[km1] + s_of_g(bgb);
                        if (b_arr && (pcnt != mcnt || b_idle)) begin
                            neurons_with_delta <= neurons_with_delta + 1'b1;
                            active[km1] <= 1'b1;
                        end
                        bhc <= bhc + 1'b1;
                        if (blb == LAST_LANE) begin
                            blb <= {LB{1'b0}};
                            bgb <= bgb + 1'b1;
                        end else begin
                            blb <= blb + 1'b1;
                        end
                    end
                    pcnt <= {CNTB{1'b0}};
                    mcnt <= {CNTB{1'b0}};
                    busy[bh] <= 1'b0;
                    ready[bh] <= 1'b0;
                    bh <= !bh;
                    if (b_bias) begin
                        bstate <= B_IDLE;
                        if (kk == 0) begin
                            estate <= E_IDLE;
                        end else begin
                            estate <= E_LSTART;
                            kk <= km1;
                            keyb <= keyb + woff_down[kk];
                        end
                    end else begin
                        bstate <= B_WAIT;
                    end
                end
                default: ;
            endcase
        end

        if (rst) begin
            estate <= E_IDLE;
            astate <= A_IDLE;
            bstate <= B_IDLE;
            kp <= KP_IDLE;
            hv_busy <= 1'b0;
            tok_v <= 1'b0;
            tok_salt <= 1'b0;
            asm_v <= 1'b0;
            arr_cnt <= {ROW_BITS{1'b0}};
            bad_label <= 1'b0;
            weights_changed <= {WCOUNT_BITS{1'b0}};
            neurons_with_delta <= {NDELTA_BITS{1'b0}};
            mv_acc <= {LANES{1'b0}};
            e_v <= 1'b0;
            q_w <= 1'b0;
            start_q <= 1'b0;
        end
    end
endmodule

`resetall
