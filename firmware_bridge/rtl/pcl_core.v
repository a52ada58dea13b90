// Event-driven inference core for the fixed-point datapath of docs/datapath.md.
//
// Per image, per step n = 0 .. MAX_STEPS-1, layers from the last to the first (layer k only
// sees layer k-1's spikes of step n-1, so this order lets one spike queue per layer serve both):
//   ACC    every arriving row (bias at n = 0, then input spikes of step n for k = 0, or the
//          queued spikes of layer k-1 for k > 0) is fetched from the weight RAM one word of
//          LANES weights per cycle and added into LANES neuron states per cycle;
//   SWEEP  every neuron group of layer k: I = OVF_I(..), V = OVF_V(V + I), fire, decay;
//          groups with fires are pushed to the layer's spike queue as (group, lane mask);
//   REPORT the queue is streamed out as spike events; on the output layer the first step with
//          a spike is the decision (tie rule applied over the V read back from the state RAM).
// The image ends after the decision step has been completed for every layer (early
// termination) or after MAX_STEPS steps; the remaining input beats are drained and one result
// beat is sent. Counters as the emulator's: rows read per layer (bias excluded), decision step,
// tie.
//
// Weight RAM: one word = LANES weights (lane l at bits [l*WEIGHT_BITS +: WEIGHT_BITS]) of one
// row; word g of row r of layer k is at LAYER_WEIGHT_BASE[k] + (r << LAYER_ROW_SHIFT[k]) + g,
// g < LAYER_GROUPS[k] <= 2**LAYER_ROW_SHIFT[k] (rows padded to a power of two of words).
// Thresholds are loaded through the same load port (wl_threshold = 1, wl_addr = layer).
// Streams are valid/ready; a beat moves on a cycle with valid & ready.
//
// Training (LEARNING = 1, docs/learning-rule.md; pcl_learn.v beside the core on the weight-RAM
// port): a request beat {label, sample index} on tc_* before an image's first input beat makes
// that image a training step. Its forward pass runs the margin window (steps up to
// E = min(D + MARGIN_STEPS - 1, MAX_STEPS - 1); ALL_VIOLATORS: E = min(s_c + MARGIN_STEPS - 1,
// MAX_STEPS - 1), s_c the label's spike step, MAX_STEPS - 1 when it does not fire; the counters and the decision are those of the
// inference; spikes are reported up to E), then pcl_learn applies the rule, and the result beat
// carries res_trained, res_weights_changed and res_neurons_with_delta as well. A read-back
// request (rb_*) streams every weight-RAM word in address order (rd_*). With LEARNING = 0 none
// of this is built (the request inputs are unused and tc_ready / rb_ready stay low).
`resetall
`default_nettype none

module pcl_core #(
    // Defaults: the layout of RtlLayout(DatapathConfig(), (4, 6, 2), lanes=4), so that the module
    // elaborates on its own; a design binds every parameter from pcl_core_params.vh.
    parameter integer LANES = 4,
    parameter integer N_LAYERS = 2,
    parameter integer N_IN = 4,
    parameter [32*N_LAYERS-1:0] LAYER_N_PRE = {32'd6, 32'd4},
    parameter [32*N_LAYERS-1:0] LAYER_N_POST = {32'd2, 32'd6},
    parameter [32*N_LAYERS-1:0] LAYER_GROUPS = {32'd1, 32'd2},
    parameter [32*N_LAYERS-1:0] LAYER_LAST_LANES = {32'd2, 32'd2},
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
    parameter integer ROWCOUNT_BITS = 3,
    parameter integer WL_BITS = 32,
    // datapath
    parameter integer WEIGHT_BITS = 8,
    parameter integer CURRENT_FRAC_BITS = 6,
    parameter integer CURRENT_BITS = 24,
    parameter integer MEMBRANE_BITS = 24,
    parameter integer WIDE_BITS = 25,
    parameter integer TIME_SHIFT = 6,
    parameter integer CURRENT_WRAP = 0,
    parameter integer MEMBRANE_WRAP = 0,
    parameter integer TIE_LOWEST_INDEX = 0,
    parameter integer MAX_STEPS = 512,
    // learning: 0 = an inference-only core. The rule's constants are bound from the generated
    // pcl_learning.vh (LearningConfig); these defaults are placeholders that only elaborate.
    parameter integer LEARNING = 0,
    parameter integer NEURONS = 8,
    parameter integer NEURON_ADDR_BITS = 3,
    parameter integer WCOUNT_BITS = 8,
    parameter integer NDELTA_BITS = 4,
    parameter integer MARGIN_STEPS = 1,
    parameter integer HIDDEN_PROB_Q16 = 0,
    parameter integer OUTPUT_PROB_Q16 = 0,
    parameter integer PROB_HALVING_SAMPLES = 0,
    parameter [31:0] LEARN_SEED = 32'd0,
    parameter integer ALL_VIOLATORS = 0,
    parameter integer CORRECT_ALWAYS = 0,
    parameter integer HIDDEN_SPIKE_TARGET = 0,
    parameter [31:0] MIX_MUL_1 = 32'd0,
    parameter [31:0] MIX_MUL_2 = 32'd0,
    parameter [31:0] INDEX_MUL = 32'd0,
    parameter [31:0] SAMPLE_SALT = 32'd0
) (
    input  wire clk,
    input  wire rst,
    // weight / threshold load (accepted only between images)
    input  wire                          wl_valid,
    output wire                          wl_ready,
    input  wire                          wl_threshold,
    input  wire [WADDR_BITS-1:0]         wl_addr,
    input  wire [WL_BITS-1:0]            wl_data,
    // weight RAM, single port, synchronous read (data the cycle after wmem_en & !wmem_we)
    output wire                          wmem_en,
    output wire                          wmem_we,
    output wire [WADDR_BITS-1:0]         wmem_addr,
    output wire [LANES*WEIGHT_BITS-1:0]  wmem_wdata,
    input  wire [LANES*WEIGHT_BITS-1:0]  wmem_rdata,
    // training request: {label, sample index}, before the first input beat of its image
    input  wire                          tc_valid,
    output wire                          tc_ready,
    input  wire [NEURON_BITS-1:0]        tc_label,
    input  wire [31:0]                   tc_index,
    // weight read-back: one request beat, then every weight-RAM word in address order
    input  wire                          rdq_valid,
    output wire                          rdq_ready,
    output wire                          rd_valid,
    input  wire                          rd_ready,
    output wire [LANES*WEIGHT_BITS-1:0]  rd_data,
    output wire                          rd_last,
    // input spike events, sorted by step; in_last marks an image's last beat. A beat with
    // in_step >= MAX_STEPS never arrives (use one as the only beat of an image without spikes).
    input  wire                          in_valid,
    output reg                           in_ready,
    input  wire [IN_INDEX_BITS-1:0]      in_index,
    input  wire [STEP_BITS-1:0]          in_step,
    input  wire                          in_last,
    // spike events: every spike in steps 0 .. decision step
    output wire                          sp_valid,
    input  wire                          sp_ready,
    output wire [LAYER_BITS-1:0]         sp_layer,
    output wire [NEURON_BITS-1:0]        sp_index,
    output wire [STEP_BITS-1:0]          sp_step,
    // one result per image
    output wire                          res_valid,
    input  wire                          res_ready,
    output reg                           res_decided,
    output reg  [NEURON_BITS-1:0]        res_class,
    output reg  [STEP_BITS-1:0]          res_step,        // decision step (valid if decided)
    output reg                           res_tie,
    output wire [N_LAYERS*ROWCOUNT_BITS-1:0] res_rows_read,
    output reg                           res_input_error, // beat out of step order or index >= N_IN (or label >= outputs)
    output wire                          res_trained,     // a training step: the two counts below are valid
    output wire [WCOUNT_BITS-1:0]        res_weights_changed,
    output wire [NDELTA_BITS-1:0]        res_neurons_with_delta
);
    localparam integer SW = 1 + MEMBRANE_BITS + WIDE_BITS;   // state bits per neuron
    localparam integer QW = GROUP_BITS + LANES;               // queue entry: group, lane mask
    localparam integer LB = (LANES > 1) ? $clog2(LANES) : 1;
    // States; a learning core has two more (in an inference-only core their codes are unused).
    localparam integer STATE_BITS = (LEARNING != 0) ? 4 : 3;
    localparam integer S_IDLE_I = 0, S_ACC_I = 1, S_SWEEP_I = 2, S_DRAIN_I = 3, S_REPORT_I = 4, S_NEXT_I = 5,
                       S_FLUSH_I = 6, S_RESULT_I = 7, S_LEARN_I = 8, S_READBACK_I = 9;
    localparam [STATE_BITS-1:0] S_IDLE = S_IDLE_I[STATE_BITS-1:0], S_ACC = S_ACC_I[STATE_BITS-1:0],
                                S_SWEEP = S_SWEEP_I[STATE_BITS-1:0], S_DRAIN = S_DRAIN_I[STATE_BITS-1:0],
                                S_REPORT = S_REPORT_I[STATE_BITS-1:0], S_NEXT = S_NEXT_I[STATE_BITS-1:0],
                                S_FLUSH = S_FLUSH_I[STATE_BITS-1:0], S_RESULT = S_RESULT_I[STATE_BITS-1:0],
                                S_LEARN = S_LEARN_I[STATE_BITS-1:0], S_READBACK = S_READBACK_I[STATE_BITS-1:0];
    localparam [1:0] R_FETCH = 2'd0, R_ENTRY = 2'd1, R_BITS = 2'd2;
    localparam integer PIPE = 3;   // lane pipeline: issue, stage 1, stage 2 (see state RAM below)
    // Constants at the width of the registers they are compared with or loaded into.
    localparam integer LAST_LAYER_I = N_LAYERS - 1;
    localparam [LAYER_BITS-1:0] LAST_LAYER = LAST_LAYER_I[LAYER_BITS-1:0];
    localparam integer LAST_STEP_I = MAX_STEPS - 1;
    localparam [STEP_BITS-1:0] LAST_STEP = LAST_STEP_I[STEP_BITS-1:0];
    localparam [IN_INDEX_BITS:0] N_IN_W = N_IN[IN_INDEX_BITS:0];
    // A group index as a state / queue address offset: zero-extended or cut to SADDR_BITS (the
    // sum base + group is below STATE_DEPTH, so the cut bits are 0).
    localparam integer GA = GROUP_BITS < SADDR_BITS ? GROUP_BITS : SADDR_BITS;
    // A neuron index (group * LANES + lane) is formed at the wider of the row and the neuron
    // index widths; it is exact modulo 2**NW, and both uses (a row of layer k, a neuron of layer
    // k) are below 2**NW. LANES_NW is LANES modulo 2**NW, which is all that product needs.
    localparam integer NW = ROW_BITS > NEURON_BITS ? ROW_BITS : NEURON_BITS;
    localparam integer NG = GROUP_BITS < NW ? GROUP_BITS : NW;
    localparam integer NL = LB < NW ? LB : NW;
    localparam [NW-1:0] LANES_NW = LANES[NW-1:0];

    // ---- parameter checks: a layout that disagrees with itself would run and compute nonsense.
    // The conditions are constants (constant functions), so yosys drops a passing check and
    // stops at a failing one (it cannot resolve $fatal); Icarus prints the message and exits.
    // RtlLayout (firmware_bridge/rtl/params.py) computes all of these values.
    function integer field(input [32*N_LAYERS-1:0] vec, input integer layer);
        field = vec[layer*32 +: 32];
    endfunction
    // The first layer whose constants disagree with LANES, the sizes and the running sums, or -1.
    function integer first_bad_layer(input integer unused_arg);
        integer l, groups, state, wbase;
        begin
            first_bad_layer = -1;
            state = 0;
            wbase = 0;
            for (l = N_LAYERS - 1; l >= 0; l = l - 1) begin
                groups = (field(LAYER_N_POST, l) + LANES - 1) / LANES;
                if (field(LAYER_N_POST, l) < 1 || field(LAYER_GROUPS, l) != groups
                    || field(LAYER_LAST_LANES, l) != field(LAYER_N_POST, l) - (groups - 1) * LANES
                    || field(LAYER_N_PRE, l) != (l == 0 ? N_IN : field(LAYER_N_POST, l - 1))
                    || groups > (1 << field(LAYER_ROW_SHIFT, l)) || groups >= (1 << GROUP_BITS)
                    || field(LAYER_N_PRE, l) >= (1 << ROW_BITS) || field(LAYER_N_PRE, l) >= (1 << ROWCOUNT_BITS)
                    || field(LAYER_N_POST, l) > (1 << NEURON_BITS))
                    first_bad_layer = l;
            end
            for (l = 0; l < N_LAYERS; l = l + 1) begin
                if (first_bad_layer < 0
                    && (field(LAYER_STATE_BASE, l) != state || field(LAYER_WEIGHT_BASE, l) != wbase))
                    first_bad_layer = l;
                state = state + field(LAYER_GROUPS, l);
                wbase = wbase + ((field(LAYER_N_PRE, l) + 1) << field(LAYER_ROW_SHIFT, l));
            end
        end
    endfunction
    function integer weight_words(input integer unused_arg);
        integer l;
        begin
            weight_words = 0;
            for (l = 0; l < N_LAYERS; l = l + 1)
                weight_words = weight_words + ((field(LAYER_N_PRE, l) + 1) << field(LAYER_ROW_SHIFT, l));
        end
    endfunction
    function integer state_words(input integer unused_arg);
        integer l;
        begin
            state_words = 0;
            for (l = 0; l < N_LAYERS; l = l + 1) state_words = state_words + field(LAYER_GROUPS, l);
        end
    endfunction
    function integer max_n_pre(input integer unused_arg);
        integer l;
        begin
            max_n_pre = 0;
            for (l = 0; l < N_LAYERS; l = l + 1)
                if (field(LAYER_N_PRE, l) > max_n_pre) max_n_pre = field(LAYER_N_PRE, l);
        end
    endfunction
    localparam integer BAD_LAYER = first_bad_layer(0);
    localparam integer WEIGHT_WORDS = weight_words(0);
    localparam integer STATE_WORDS = state_words(0);
    // The per-neuron current register holds the exact sum of a step's rows (docs/datapath.md 4.2).
    localparam integer ACC_BITS = WEIGHT_BITS + CURRENT_FRAC_BITS + $clog2(max_n_pre(0) + 1);
    localparam integer MIN_WIDE_BITS = (CURRENT_BITS > ACC_BITS ? CURRENT_BITS : ACC_BITS) + 1;
    initial begin
        if (LANES < 1 || LANES > 64 || N_LAYERS < 1 || N_IN < 1)
            $fatal(1, "pcl_core: LANES %0d (1..64), N_LAYERS %0d, N_IN %0d (>= 1)", LANES, N_LAYERS, N_IN);
        if (N_LAYERS > (1 << LAYER_BITS) || N_IN > (1 << IN_INDEX_BITS) || MAX_STEPS < 1
            || MAX_STEPS >= (1 << STEP_BITS))
            $fatal(1, "pcl_core: LAYER_BITS, IN_INDEX_BITS or STEP_BITS too narrow (a step of MAX_STEPS must fit)");
        if (WADDR_BITS > 32 || SADDR_BITS > 32 || WADDR_BITS < ROW_BITS || ROW_BITS < IN_INDEX_BITS)
            $fatal(1, "pcl_core: need ROW_BITS >= IN_INDEX_BITS, WADDR_BITS >= ROW_BITS, address widths <= 32");
        if (WL_BITS < LANES * WEIGHT_BITS || WL_BITS < MEMBRANE_BITS)
            $fatal(1, "pcl_core: WL_BITS %0d holds neither a weight word nor a threshold", WL_BITS);
        if (TIE_LOWEST_INDEX != 0 && TIE_LOWEST_INDEX != 1)
            $fatal(1, "pcl_core: TIE_LOWEST_INDEX is 0 (max membrane) or 1 (lowest index)");
        if (BAD_LAYER >= 0)
            $fatal(1, "pcl_core: layer %0d: sizes, groups, bases or widths disagree", BAD_LAYER);
        if (STATE_DEPTH != STATE_WORDS || STATE_DEPTH > (1 << SADDR_BITS) || WEIGHT_WORDS > (1 << WADDR_BITS))
            $fatal(1, "pcl_core: STATE_DEPTH %0d (layers: %0d groups), %0d weight words: depth or address widths wrong",
                   STATE_DEPTH, STATE_WORDS, WEIGHT_WORDS);
        if (WIDE_BITS < MIN_WIDE_BITS)
            $fatal(1, "pcl_core: WIDE_BITS %0d < %0d: the sum of a step's rows would overflow",
                   WIDE_BITS, MIN_WIDE_BITS);
    end

    reg [STATE_BITS-1:0] state;
    reg [1:0] rstate;
    reg [STEP_BITS-1:0] n;
    reg [LAYER_BITS-1:0] k;
    reg in_done, bias_done, decided;

    // Per-layer constants selected by the current layer k.
    wire [31:0] last_lanes_k = LAYER_LAST_LANES[k*32 +: 32];
    wire [ROW_BITS-1:0] bias_row_k = LAYER_N_PRE[k*32 +: ROW_BITS];   // row n_pre: the bias
    wire [SADDR_BITS-1:0] sbase_k = LAYER_STATE_BASE[k*32 +: SADDR_BITS];
    wire [LAYER_BITS-1:0] kp = k - 1'b1;                       // source layer of ACC for k > 0
    wire [SADDR_BITS-1:0] sbase_kp = LAYER_STATE_BASE[kp*32 +: SADDR_BITS];
    wire is_out_layer = (k == LAST_LAYER);
    // Per layer: the last group index, whether a row has at least PIPE groups, and the gap
    // cycles after a shorter row (see the state RAM below).
    wire [GROUP_BITS-1:0] layer_last_g [0:N_LAYERS-1];
    wire [N_LAYERS-1:0] layer_long_row;
    wire [1:0] layer_gap [0:N_LAYERS-1];
    genvar gk;
    generate
        for (gk = 0; gk < N_LAYERS; gk = gk + 1) begin : g_layer
            localparam integer G = LAYER_GROUPS[gk*32 +: 32];
            localparam integer LAST_G = G - 1;
            localparam integer GAP = (G >= PIPE) ? 0 : PIPE - 1 - G;
            assign layer_last_g[gk] = LAST_G[GROUP_BITS-1:0];
            assign layer_long_row[gk] = (G >= PIPE);
            assign layer_gap[gk] = GAP[1:0];
        end
    endgenerate
    wire [GROUP_BITS-1:0] last_g_k = layer_last_g[k];
    wire long_row_k = layer_long_row[k];

    // Thresholds (loaded) and counters.
    reg [MEMBRANE_BITS-1:0] threshold [0:N_LAYERS-1];
    reg [ROWCOUNT_BITS-1:0] rows_read [0:N_LAYERS-1];
    reg [GROUP_BITS-1:0] qcnt [0:N_LAYERS-1];
    genvar gj;
    generate
        for (gj = 0; gj < N_LAYERS; gj = gj + 1) begin : g_rows
            assign res_rows_read[gj*ROWCOUNT_BITS +: ROWCOUNT_BITS] = rows_read[gj];
        end
    endgenerate

    // ------------------------------------------------------------------ row issuer
    // Issues the words of one row, one per cycle: weight address and state address together.
    reg iss_busy, iss_init;
    reg [WADDR_BITS-1:0] iss_waddr;
    reg [SADDR_BITS-1:0] iss_saddr;
    reg [GROUP_BITS-1:0] iss_g;
    wire iss_last = (iss_g == last_g_k);
    reg [1:0] iss_gap;   // cycles to wait after a short row (fewer than PIPE groups), see state RAM
    wire iss_free = iss_busy ? (iss_last && long_row_k) : (iss_gap == 2'd0);

    // Rows pass through a one-entry buffer (rb_*) between the row sources and the issuer, which
    // keeps the source decisions and the address arithmetic in separate cycles.
    reg [ROW_BITS-1:0] row_sel;        // row taken from a source this cycle (combinational, below)
    reg row_take, row_init;
    reg rb_valid, rb_init;
    reg [ROW_BITS-1:0] rb_row;
    wire rb_take = rb_valid && iss_free;
    wire src_free = !rb_valid || rb_take;
    wire [WADDR_BITS-1:0] row_base [0:N_LAYERS-1];
    generate
        for (gj = 0; gj < N_LAYERS; gj = gj + 1) begin : g_rowbase
            // Rows are 2**LAYER_ROW_SHIFT words apart: the row offset is wiring, not a multiply.
            localparam [WADDR_BITS-1:0] WB = LAYER_WEIGHT_BASE[gj*32 +: WADDR_BITS];
            localparam integer SH = LAYER_ROW_SHIFT[gj*32 +: 32];
            wire [WADDR_BITS-1:0] offset = {{(WADDR_BITS - ROW_BITS){1'b0}}, rb_row} << SH;
            assign row_base[gj] = WB + offset;
        end
    endgenerate

    // ------------------------------------------------------------------ sweep issue
    reg [GROUP_BITS-1:0] sw_g;
    reg [1:0] drain;

    // ------------------------------------------------------------------ spike queue
    reg [GROUP_BITS-1:0] qe_idx;       // next entry to read (ACC: of layer k-1; REPORT: of k)
    reg qe_pending;
    reg [GROUP_BITS-1:0] ent_g;
    reg [LANES-1:0] ent_mask;
    wire q_we;
    wire [SADDR_BITS-1:0] q_waddr;
    wire [QW-1:0] q_wdata;
    reg q_re;
    reg [SADDR_BITS-1:0] q_raddr;
    wire [QW-1:0] q_rdata;
    pcl_ram_sdp #(.WIDTH(QW), .DEPTH(STATE_DEPTH), .ADDR_BITS(SADDR_BITS)) u_queue (
        .clk(clk), .we(q_we), .waddr(q_waddr), .wdata(q_wdata),
        .re(q_re), .raddr(q_raddr), .rdata(q_rdata));

    // Lowest set lane of ent_mask.
    reg [LB-1:0] ent_bit;
    integer bi;
    always @* begin
        ent_bit = {LB{1'b0}};
        for (bi = LANES - 1; bi >= 0; bi = bi - 1)
            if (ent_mask[bi]) ent_bit = bi[LB-1:0];
    end
    wire [NW-1:0] ent_neuron = {{(NW - NG){1'b0}}, ent_g[NG-1:0]} * LANES_NW + {{(NW - NL){1'b0}}, ent_bit[NL-1:0]};

    // ------------------------------------------------------------------ state RAM + pipeline
    // Issue (cycle t): st_re, st_raddr, op. Lane stage 1 (t+1): RAM data. Lane stage 2 (t+2):
    // write-back and queue push. One word holds the LANES neurons of a group ({fired, V, I_wide}
    // per lane). A word is never read before its previous write landed: words of one layer
    // differ, and a row of fewer than PIPE groups is followed by gap cycles (iss_free below).
    reg st_re;
    reg [SADDR_BITS-1:0] st_raddr;
    reg op_acc, op_sweep;
    reg ex_acc, ex_sweep, ex_init;
    reg [SADDR_BITS-1:0] ex_saddr;
    reg [GROUP_BITS-1:0] ex_g;
    reg ex2_acc, ex2_sweep;
    reg [SADDR_BITS-1:0] ex2_saddr;
    reg [GROUP_BITS-1:0] ex2_g;
    wire ex_we = ex2_acc | ex2_sweep;
    wire [LANES*SW-1:0] st_rdata, st_wdata;
    pcl_ram_sdp #(.WIDTH(LANES*SW), .DEPTH(STATE_DEPTH), .ADDR_BITS(SADDR_BITS)) u_state (
        .clk(clk), .we(ex_we), .waddr(ex2_saddr), .wdata(st_wdata),
        .re(st_re), .raddr(st_raddr), .rdata(st_rdata));

    // Per-lane "holds a real neuron" for stage 2, computed in stage 1; the layer's threshold is
    // copied into a register (k changes many cycles before the next sweep reaches stage 2).
    wire ex_last_group = (ex_g == last_g_k);
    reg [LANES-1:0] ex2_lane_valid;
    reg [MEMBRANE_BITS-1:0] th_k;
    wire [LANES-1:0] fire;
    genvar gl;
    generate
        for (gl = 0; gl < LANES; gl = gl + 1) begin : g_lane
            pcl_lane #(
                .WEIGHT_BITS(WEIGHT_BITS), .CURRENT_FRAC_BITS(CURRENT_FRAC_BITS),
                .CURRENT_BITS(CURRENT_BITS), .MEMBRANE_BITS(MEMBRANE_BITS), .WIDE_BITS(WIDE_BITS),
                .TIME_SHIFT(TIME_SHIFT), .CURRENT_WRAP(CURRENT_WRAP), .MEMBRANE_WRAP(MEMBRANE_WRAP)
            ) u_lane (
                .clk(clk), .state_in(st_rdata[gl*SW +: SW]), .weight(wmem_rdata[gl*WEIGHT_BITS +: WEIGHT_BITS]),
                .acc(ex_acc), .init(ex_init), .valid(ex2_lane_valid[gl]), .threshold(th_k),
                .state_out(st_wdata[gl*SW +: SW]), .fire(fire[gl]));
        end
    endgenerate
    // Queue push one cycle after stage 2 (stage 3), registered.
    reg q_we_r;
    reg [QW-1:0] q_wdata_r;
    assign q_we = q_we_r;
    wire [GROUP_BITS-1:0] qcnt_k = qcnt[k];
    assign q_waddr = sbase_k + {{(SADDR_BITS - GA){1'b0}}, qcnt_k[GA-1:0]};
    assign q_wdata = q_wdata_r;

    // ------------------------------------------------------------------ report / decision
    reg [NEURON_BITS-1:0] best_idx;
    reg [MEMBRANE_BITS-1:0] best_v;
    reg have_best, out_multi;
    reg cand_valid;                      // an output spike waiting for the tie compare
    reg [NEURON_BITS-1:0] cand_idx;
    reg [MEMBRANE_BITS-1:0] cand_v;
    // V of the reported neuron: an AND-OR over the lanes with the lowest set bit of ent_mask as a
    // one-hot select (two LUT levels after the mask, not a priority encoder and a wide mux).
    wire [LANES-1:0] ent_first = ent_mask & (~ent_mask + 1'b1);
    reg [MEMBRANE_BITS-1:0] rep_v;
    integer vi;
    always @* begin
        rep_v = {MEMBRANE_BITS{1'b0}};
        for (vi = 0; vi < LANES; vi = vi + 1)
            rep_v = rep_v | (st_rdata[vi*SW + WIDE_BITS +: MEMBRANE_BITS] & {MEMBRANE_BITS{ent_first[vi]}});
    end
    assign sp_valid = (state == S_REPORT) && (rstate == R_BITS) && (ent_mask != 0);
    assign sp_layer = k;
    assign sp_index = ent_neuron[NEURON_BITS-1:0];
    assign sp_step = n;
    assign res_valid = (state == S_RESULT);

    // ------------------------------------------------------------------ weight port
    assign wl_ready = (state == S_IDLE);
    wire wl_fire = wl_valid && wl_ready;

    // ------------------------------------------------------------------ training, read-back
    // train_mode: this image is a training step (constant 0 in an inference-only core).
    reg train_r;
    reg [NEURON_BITS-1:0] label_r;
    wire train_mode = (LEARNING != 0) && train_r;
    assign tc_ready = (LEARNING != 0) && (state == S_IDLE) && !wl_valid && !rdq_valid && !train_r;
    wire tc_fire = tc_valid && tc_ready;
    wire rdq_start = (LEARNING != 0) && (state == S_IDLE) && rdq_valid && !wl_valid;
    assign rdq_ready = rdq_start;
    wire flush_done = in_done || (in_valid && in_last);
    // Rows read count only up to the decision step (the window after it is for the rule).
    wire count_rows = !train_mode || !decided || (n == res_step);
    // The last step of the window: D + MARGIN_STEPS - 1 (capped; MAX_STEPS - 1 ends it anyway).
    // ALL_VIOLATORS anchors it on the label's spike instead (label_fired and the step of its spike, from the
    // spike reports of the output layer): s_c + MARGIN_STEPS - 1, or MAX_STEPS - 1 if it is silent.
    localparam integer M1_I = (MARGIN_STEPS - 1 < MAX_STEPS) ? MARGIN_STEPS - 1 : MAX_STEPS;
    localparam [STEP_BITS:0] WINDOW_AFTER = M1_I[STEP_BITS:0];
    // win_end = anchor + WINDOW_AFTER is registered when the anchor is (the decision, or the label's
    // spike), so the end-of-step test that enables n is an equality of two registers, no adder.
    reg label_fired;
    reg [STEP_BITS:0] win_end;
    wire anchor_set = (ALL_VIOLATORS == 0) || label_fired;
    wire at_window_end = anchor_set && ({1'b0, n} == win_end);
    wire l_done, l_bad, l_st_re, l_w_en, l_w_we;
    wire [SADDR_BITS-1:0] l_st_raddr;
    wire [WADDR_BITS-1:0] l_w_addr;
    wire [LANES*WEIGHT_BITS-1:0] l_w_wdata;
    wire [WCOUNT_BITS-1:0] l_wc;
    wire [NDELTA_BITS-1:0] l_nd;
    wire [LANES-1:0] st_fired;
    genvar gf;
    generate
        for (gf = 0; gf < LANES; gf = gf + 1) begin : g_fired
            assign st_fired[gf] = st_rdata[gf*SW + SW - 1];
        end
    endgenerate
    // read-back: rd_data is the RAM's registered output, which holds until the next read
    localparam integer LAST_WORD_I = WEIGHT_WORDS - 1;
    localparam [WADDR_BITS-1:0] LAST_WORD = LAST_WORD_I[WADDR_BITS-1:0];
    reg [WADDR_BITS-1:0] rd_addr;
    reg rd_all, rd_v, rd_last_r;
    wire rd_issue = (LEARNING != 0) && (state == S_READBACK) && !rd_all && (!rd_v || rd_ready);
    assign rd_valid = (LEARNING != 0) && rd_v;
    assign rd_last = (LEARNING != 0) && rd_last_r;
    assign rd_data = wmem_rdata;
    assign res_trained = train_mode;
    assign res_weights_changed = l_wc;
    assign res_neurons_with_delta = l_nd;
    generate
        if (LEARNING != 0) begin : g_learn
            // The rule's spike target: hidden spikes delivered by the decision, over all hidden layers.
            reg [31:0] hidden_sum;
            integer hl;
            always @* begin
                hidden_sum = 32'd0;
                for (hl = 1; hl < N_LAYERS; hl = hl + 1) hidden_sum = hidden_sum + {{(32 - ROWCOUNT_BITS){1'b0}}, rows_read[hl]};
            end
            wire l_quiet = (HIDDEN_SPIKE_TARGET != 0) && res_decided && (hidden_sum > HIDDEN_SPIKE_TARGET);
            pcl_learn #(
                .LANES(LANES), .N_LAYERS(N_LAYERS), .N_IN(N_IN), .LAYER_N_PRE(LAYER_N_PRE),
                .LAYER_N_POST(LAYER_N_POST), .LAYER_GROUPS(LAYER_GROUPS), .LAYER_STATE_BASE(LAYER_STATE_BASE),
                .LAYER_WEIGHT_BASE(LAYER_WEIGHT_BASE), .LAYER_ROW_SHIFT(LAYER_ROW_SHIFT), .STATE_DEPTH(STATE_DEPTH),
                .WADDR_BITS(WADDR_BITS), .SADDR_BITS(SADDR_BITS), .GROUP_BITS(GROUP_BITS), .ROW_BITS(ROW_BITS),
                .NEURON_BITS(NEURON_BITS), .IN_INDEX_BITS(IN_INDEX_BITS), .STEP_BITS(STEP_BITS),
                .LAYER_BITS(LAYER_BITS), .WEIGHT_BITS(WEIGHT_BITS), .MAX_STEPS(MAX_STEPS), .NEURONS(NEURONS),
                .NEURON_ADDR_BITS(NEURON_ADDR_BITS), .WCOUNT_BITS(WCOUNT_BITS), .NDELTA_BITS(NDELTA_BITS),
                .MARGIN_STEPS(MARGIN_STEPS), .HIDDEN_PROB_Q16(HIDDEN_PROB_Q16), .OUTPUT_PROB_Q16(OUTPUT_PROB_Q16),
                .PROB_HALVING_SAMPLES(PROB_HALVING_SAMPLES), .LEARN_SEED(LEARN_SEED), .ALL_VIOLATORS(ALL_VIOLATORS),
                .CORRECT_ALWAYS(CORRECT_ALWAYS), .MIX_MUL_1(MIX_MUL_1), .MIX_MUL_2(MIX_MUL_2),
                .INDEX_MUL(INDEX_MUL), .SAMPLE_SALT(SAMPLE_SALT)
            ) u_learn (
                .clk(clk), .rst(rst), .prep(tc_fire), .prep_index(tc_index),
                .spk_we(train_mode && sp_valid && sp_ready), .spk_layer(k), .spk_index(sp_index), .spk_step(n),
                .arr_clear(state == S_IDLE),
                .arr_we(train_mode && state == S_ACC && row_take && !row_init && acc_from_input),
                .arr_index(in_index), .arr_step(n),
                .start(state == S_FLUSH && flush_done && train_mode), .start_label(label_r), .start_end_step(n),
                .start_quiet(l_quiet), .start_decision_step(res_step),
                .done(l_done), .weights_changed(l_wc), .neurons_with_delta(l_nd), .bad_label(l_bad),
                .st_re(l_st_re), .st_raddr(l_st_raddr), .st_fired(st_fired),
                .w_en(l_w_en), .w_we(l_w_we), .w_addr(l_w_addr), .w_wdata(l_w_wdata), .w_rdata(wmem_rdata));
            wire in_learn = (state == S_LEARN);
            assign wmem_en = (wl_fire && !wl_threshold) || iss_busy || rd_issue || (in_learn && l_w_en);
            assign wmem_we = (wl_fire && !wl_threshold) || (in_learn && l_w_we);
            assign wmem_addr = in_learn ? l_w_addr : (state == S_READBACK) ? rd_addr : iss_busy ? iss_waddr : wl_addr;
            assign wmem_wdata = in_learn ? l_w_wdata : wl_data[LANES*WEIGHT_BITS-1:0];
        end else begin : g_infer
            assign wmem_en = (wl_fire && !wl_threshold) || iss_busy;
            assign wmem_we = wl_fire && !wl_threshold;
            assign wmem_addr = iss_busy ? iss_waddr : wl_addr;
            assign wmem_wdata = wl_data[LANES*WEIGHT_BITS-1:0];
            assign l_done = 1'b0;
            assign l_bad = 1'b0;
            assign l_st_re = 1'b0;
            assign l_w_en = 1'b0;
            assign l_w_we = 1'b0;
            assign l_st_raddr = {SADDR_BITS{1'b0}};
            assign l_w_addr = {WADDR_BITS{1'b0}};
            assign l_w_wdata = {(LANES * WEIGHT_BITS){1'b0}};
            assign l_wc = {WCOUNT_BITS{1'b0}};
            assign l_nd = {NDELTA_BITS{1'b0}};
            // The training and read-back inputs of an inference-only core are not used.
            wire unused_learning_inputs = &{1'b0, tc_label, tc_index, rd_ready, label_r, st_fired, l_done, l_bad, l_st_re,
                                            l_w_en, l_w_we, l_st_raddr, l_w_addr, l_w_wdata};
        end
    endgenerate

    // ------------------------------------------------------------------ sequencer, combinational part
    wire acc_from_input = (k == 0);
    wire in_now = in_valid && (in_step == n);
    wire in_bad = in_valid && (in_step < n || {1'b0, in_index} >= N_IN_W);
    reg acc_done;   // no more rows for this layer and step
    always @* begin
        row_take = 1'b0;
        row_init = 1'b0;
        row_sel = {ROW_BITS{1'b0}};
        in_ready = 1'b0;
        acc_done = 1'b0;
        q_re = 1'b0;
        q_raddr = sbase_kp + {{(SADDR_BITS - GA){1'b0}}, qe_idx[GA-1:0]};
        st_re = 1'b0;
        st_raddr = iss_saddr;
        op_acc = 1'b0;
        op_sweep = 1'b0;
        case (state)
            S_ACC: begin
                if (iss_busy) begin
                    st_re = 1'b1;
                    op_acc = 1'b1;
                end
                if (n == 0 && !bias_done) begin
                    if (src_free) begin
                        row_take = 1'b1;
                        row_init = 1'b1;
                        row_sel = bias_row_k;
                    end
                end else if (acc_from_input) begin
                    if (in_done) acc_done = 1'b1;
                    else if (in_bad) in_ready = 1'b1;               // dropped, flagged
                    else if (in_now) begin
                        if (src_free) begin
                            in_ready = 1'b1;
                            row_take = 1'b1;
                            row_sel = {{(ROW_BITS - IN_INDEX_BITS){1'b0}}, in_index};
                        end
                    end else if (in_valid) acc_done = 1'b1;          // next beat is for a later step
                end else begin
                    if (ent_mask != 0) begin
                        if (src_free) begin
                            row_take = 1'b1;
                            row_sel = ent_neuron[ROW_BITS-1:0];
                        end
                    end else if (!qe_pending) begin
                        if (qe_idx != qcnt[kp]) q_re = 1'b1;
                        else acc_done = 1'b1;
                    end
                end
            end
            S_SWEEP: begin
                st_re = 1'b1;
                st_raddr = sbase_k + {{(SADDR_BITS - GA){1'b0}}, sw_g[GA-1:0]};
                op_sweep = 1'b1;
            end
            S_REPORT: begin
                q_raddr = sbase_k + {{(SADDR_BITS - GA){1'b0}}, qe_idx[GA-1:0]};
                if (rstate == R_FETCH && qe_idx != qcnt_k) q_re = 1'b1;
                if (rstate == R_ENTRY) begin
                    st_re = 1'b1;
                    st_raddr = sbase_k + {{(SADDR_BITS - GA){1'b0}}, q_rdata[LANES +: GA]};
                end
            end
            S_FLUSH: in_ready = !in_done;
            default: ;
        endcase
        if (LEARNING != 0 && state == S_LEARN) begin   // the rule reads the fired flags
            st_re = l_st_re;
            st_raddr = l_st_raddr;
        end
    end

    // ------------------------------------------------------------------ sequencer, registers
    integer li;
    always @(posedge clk) begin
        // execute stage follows the issue stage by one cycle
        ex_acc <= op_acc;
        ex_sweep <= op_sweep;
        ex_init <= iss_init;
        ex_saddr <= st_raddr;
        ex_g <= op_sweep ? sw_g : iss_g;
        ex2_acc <= ex_acc;
        ex2_sweep <= ex_sweep;
        ex2_saddr <= ex_saddr;
        ex2_g <= ex_g;
        for (li = 0; li < LANES; li = li + 1) ex2_lane_valid[li] <= !ex_last_group || (li < last_lanes_k);
        th_k <= threshold[k];
        q_we_r <= ex2_sweep && (|fire);
        q_wdata_r <= {ex2_g, fire};
        if (q_we) qcnt[k] <= qcnt[k] + 1'b1;

        // row issuer
        if (row_take) begin
            rb_valid <= 1'b1;
            rb_init <= row_init;
            rb_row <= row_sel;
        end else if (rb_take) begin
            rb_valid <= 1'b0;
        end
        if (rb_take) begin
            iss_busy <= 1'b1;
            iss_init <= rb_init;
            iss_waddr <= row_base[k];
            iss_saddr <= sbase_k;
            iss_g <= {GROUP_BITS{1'b0}};
            iss_gap <= 2'd0;
        end else if (iss_busy) begin
            if (iss_last) begin
                iss_busy <= 1'b0;
                iss_gap <= layer_gap[k];
            end
            iss_waddr <= iss_waddr + 1'b1;
            iss_saddr <= iss_saddr + 1'b1;
            iss_g <= iss_g + 1'b1;
        end else if (iss_gap != 0) begin
            iss_gap <= iss_gap - 1'b1;
        end

        if (in_ready && in_valid) begin
            if (in_last) in_done <= 1'b1;
            if (in_bad && state == S_ACC) res_input_error <= 1'b1;
        end
        if (state == S_ACC && row_take && !row_init && count_rows) rows_read[k] <= rows_read[k] + 1'b1;
        if (row_take && row_init) bias_done <= 1'b1;
        if (q_re) begin
            qe_idx <= qe_idx + 1'b1;
            qe_pending <= 1'b1;
        end
        if (state == S_ACC) begin
            if (qe_pending) begin
                qe_pending <= 1'b0;
                {ent_g, ent_mask} <= q_rdata;
            end else if (row_take && !row_init && !acc_from_input) begin
                ent_mask <= ent_mask & (ent_mask - 1'b1);
            end
        end

        // Tie rule, one cycle behind the spike report (off the report's critical path).
        if (cand_valid) begin
            cand_valid <= 1'b0;
            if (have_best) out_multi <= 1'b1;
            if (!have_best || (TIE_LOWEST_INDEX == 0 && $signed(cand_v) > $signed(best_v))) begin
                best_idx <= cand_idx;
                best_v <= cand_v;
            end
            have_best <= 1'b1;
        end

        case (state)
            S_IDLE: begin
                if (wl_fire && wl_threshold) threshold[wl_addr[LAYER_BITS-1:0]] <= wl_data[MEMBRANE_BITS-1:0];
                if (in_valid && !wl_valid && !rdq_start && !tc_fire) begin
                    state <= S_ACC;
                    n <= {STEP_BITS{1'b0}};
                    k <= LAST_LAYER;
                    in_done <= 1'b0;
                    bias_done <= 1'b0;
                    decided <= 1'b0;
                    res_decided <= 1'b0;
                    res_class <= {NEURON_BITS{1'b0}};
                    res_step <= {STEP_BITS{1'b0}};
                    res_tie <= 1'b0;
                    res_input_error <= 1'b0;
                    have_best <= 1'b0;
                    out_multi <= 1'b0;
                    cand_valid <= 1'b0;
                    qe_idx <= {GROUP_BITS{1'b0}};
                    qe_pending <= 1'b0;
                    ent_mask <= {LANES{1'b0}};
                    for (li = 0; li < N_LAYERS; li = li + 1) begin
                        rows_read[li] <= {ROWCOUNT_BITS{1'b0}};
                        qcnt[li] <= {GROUP_BITS{1'b0}};
                    end
                end
            end
            S_ACC: begin
                // sw_g is read only in S_SWEEP: cleared in every ACC cycle, so the end-of-ACC
                // decision (from the input beat's step compare) enables the state alone.
                sw_g <= {GROUP_BITS{1'b0}};
                if (acc_done && !rb_valid && iss_free) state <= S_SWEEP;
            end
            S_SWEEP: begin
                // Layer k's queue restarts with its sweep (its first push comes PIPE cycles later);
                // cleared here, not on the way in, to keep the end-of-ACC decision's fanout small.
                if (sw_g == {GROUP_BITS{1'b0}}) qcnt[k] <= {GROUP_BITS{1'b0}};
                sw_g <= sw_g + 1'b1;
                if (sw_g == last_g_k) begin
                    state <= S_DRAIN;
                    drain <= 2'd0;
                end
            end
            S_DRAIN: begin   // three cycles: the last sweep word passes lane stages 1, 2, queue push
                drain <= drain + 1'b1;
                if (drain == 2'd2) state <= S_REPORT;
                rstate <= R_FETCH;
                qe_idx <= {GROUP_BITS{1'b0}};
            end
            S_REPORT: begin
                case (rstate)
                    R_FETCH: begin
                        if (qe_idx != qcnt_k) rstate <= R_ENTRY;
                        else if (!cand_valid) begin
                            if (is_out_layer && have_best && !decided) begin
                                decided <= 1'b1;
                                res_decided <= 1'b1;
                                res_class <= best_idx;
                                res_step <= n;
                                res_tie <= out_multi;
                                if (ALL_VIOLATORS == 0) win_end <= {1'b0, n} + WINDOW_AFTER;
                            end
                            state <= S_NEXT;
                        end
                    end
                    R_ENTRY: begin
                        {ent_g, ent_mask} <= q_rdata;
                        qe_pending <= 1'b0;
                        rstate <= R_BITS;   // the state word read this cycle is there next cycle
                    end
                    R_BITS: begin
                        if (ent_mask == 0) rstate <= R_FETCH;
                        else if (sp_ready) begin
                            ent_mask <= ent_mask & (ent_mask - 1'b1);
                            cand_valid <= is_out_layer;
                            cand_idx <= ent_neuron[NEURON_BITS-1:0];
                            cand_v <= rep_v;
                        end
                    end
                    default: rstate <= R_FETCH;
                endcase
            end
            S_NEXT: begin
                bias_done <= 1'b0;
                qe_idx <= {GROUP_BITS{1'b0}};
                qe_pending <= 1'b0;
                ent_mask <= {LANES{1'b0}};
                if (k != 0) begin
                    k <= k - 1'b1;
                    state <= S_ACC;
                end else if ((decided && (!train_mode || at_window_end)) || n == LAST_STEP) begin
                    state <= S_FLUSH;
                end else begin
                    n <= n + 1'b1;
                    k <= LAST_LAYER;
                    state <= S_ACC;
                end
            end
            S_FLUSH: if (flush_done) state <= train_mode ? S_LEARN : S_RESULT;
            S_RESULT: if (res_ready) state <= S_IDLE;
            default: state <= S_IDLE;
        endcase

        // Training and read-back (overriding the default above for their two states).
        if (LEARNING != 0) begin
            if (tc_fire) begin
                train_r <= 1'b1;
                label_r <= tc_label;
            end
            // The label's spike (the all_violators window's anchor): cleared when an image starts.
            if (state == S_IDLE) label_fired <= 1'b0;
            if (state == S_REPORT && rstate == R_BITS && ent_mask != 0 && sp_ready && is_out_layer
                && ent_neuron[NEURON_BITS-1:0] == label_r) begin
                label_fired <= 1'b1;
                if (ALL_VIOLATORS != 0) win_end <= {1'b0, n} + WINDOW_AFTER;
            end
            if (state == S_RESULT && res_ready) train_r <= 1'b0;
            if (state == S_LEARN) begin
                state <= l_done ? S_RESULT : S_LEARN;
                if (l_done && l_bad) res_input_error <= 1'b1;
            end
            if (rdq_start) begin
                state <= S_READBACK;
                rd_addr <= {WADDR_BITS{1'b0}};
                rd_all <= 1'b0;
                rd_v <= 1'b0;
            end
            if (state == S_READBACK) begin
                state <= (rd_v && rd_ready && rd_last_r) ? S_IDLE : S_READBACK;
                rd_v <= rd_issue || (rd_v && !rd_ready);
                if (rd_issue) begin
                    rd_addr <= rd_addr + 1'b1;
                    rd_last_r <= (rd_addr == LAST_WORD);
                    if (rd_addr == LAST_WORD) rd_all <= 1'b1;
                end
            end
        end

        if (rst) begin
            state <= S_IDLE;
            rstate <= R_FETCH;
            iss_busy <= 1'b0;
            rb_valid <= 1'b0;
            ex_acc <= 1'b0;
            ex_sweep <= 1'b0;
            ex2_acc <= 1'b0;
            ex2_sweep <= 1'b0;
            q_we_r <= 1'b0;
            iss_gap <= 2'd0;
            qe_pending <= 1'b0;
            in_done <= 1'b0;
            train_r <= 1'b0;
            rd_v <= 1'b0;
        end
    end
endmodule

`resetall
