#include "trainer/model.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/error.h"
#include "kernels/pauli.h"
#include "kernels/philox_simd.h"

namespace qisa {

namespace {
// Philox stream ids (the `a` counter word) for each use of the model seed.
constexpr uint32_t kInitStream = 0x494E4954u;   // "INIT"
constexpr double kPi = 3.14159265358979323846;

// Dropout sites: 3 per block.
uint32_t dropout_site(int layer, int which) { return static_cast<uint32_t>(layer * 3 + which); }
enum { kSiteAttn = 0, kSiteAttnResid = 1, kSiteMlpResid = 2 };
}  // namespace

// Offsets of one block's parameters into the flat buffer.
struct GPT::Layer {
  int64_t ln1_w, ln1_b, qk_w, qk_b = -1, v_w = -1, rx = -1, ry = -1, ry2 = -1;
  int64_t proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, mproj_w, mproj_b;
};

// An arena buffer in the run's activation type (fp32, or bf16 under precision bf16).
class ActBuffer {
 public:
  ActBuffer() = default;
  ActBuffer(Backend& be, size_t count, DType t) : buf_(be, count * dtype_bytes(t)), t_(t) {}
  Act get() const { return Act(buf_.get(), t_); }
  size_t bytes() const { return buf_.bytes(); }

 private:
  Buffer<std::byte> buf_;
  DType t_ = DType::f32;
};

// The activation arena: what backward needs, for N = max_batch * T rows, plus forward and
// gradient scratch. Every buffer is named, shaped and sized in ONE place, lay_out() below,
// which both allocates the arena and counts it (GPT::activation_bytes).
//
// recompute none: every block keeps its activations (L Blocks). recompute blocks: every block
// keeps only its input x_in; ONE Block is reused: forward overwrites it block by block, and
// backward recomputes block l into it (the same ops, inputs and dropout bits, so the same
// values bit for bit) just before block l's backward. The last block's activations are still
// there from forward, so it is not recomputed. Arena: O(L * Block) -> O(Block + L * N*C).
struct GPT::Acts {
  // What backward needs of one block besides its input. ActBuffer: the run's activation type;
  // Buffer<float>: fp32 always (statistics, the Pauli amplitudes u, losses).
  struct Block {
    ActBuffer ln1;                          // [N, C] ln1 output
    Buffer<float> ln1_mean, ln1_rstd;       // [N], [N]: its statistics
    ActBuffer qkv;                          // [N, 3C] csa (q|k|v) or [N, 2C] qisa/qisa_a (q|k)
    Buffer<float> u;                        // qisa: [N, H*C] per_head (u_h = a L_h^T), [N, C] shared (u = a L^T)
    ActBuffer vals;                         // [N, C] qisa/qisa_a: Pauli values (H heads x D)
    Buffer<float> att_stat;                 // [B, H, T] per attention row: csa log-sum-exp, qisa normaliser
    ActBuffer heads;                        // [N, C] concatenated head outputs
    ActBuffer x_mid;                        // [N, C] residual stream after the attention branch
    ActBuffer ln2;                          // [N, C]
    Buffer<float> ln2_mean, ln2_rstd;       // [N], [N]
    ActBuffer fc_pre, fc_act;               // [N, 4C] mlp.fc output before / after the activation
  };
  std::vector<ActBuffer> x_in;      // L x [N, C]: each block's input (kept in both modes)
  std::vector<Block> blocks;        // L (recompute none) or 1 (recompute blocks) Blocks
  ActBuffer branch;                 // [N, C] attn.proj / mlp.proj output before its residual add
  ActBuffer x_final, lnf;           // [N, C] x2
  Buffer<float> lnf_mean, lnf_rstd; // [N], [N]
  ActBuffer logits;                 // [N, V] (dlogits in place after backward)
  Buffer<float> losses;             // [N]
  Buffer<double> loss_sum;          // [1]: the step's summed row losses (float64)
  Buffer<int32_t> idx, targets;     // [N]
  // gradient scratch, reused by every block
  ActBuffer dx, dln;                // [N, C]: d(residual stream), d(layernorm output)
  ActBuffer dqkv, dvals;            // like qkv, vals
  Buffer<float> du;                 // like u (fp32, as u)
  ActBuffer dheads, dbranch;        // [N, C]
  ActBuffer dfc_pre, dfc_act;       // [N, 4C]

  Block& block(int l) { return blocks[blocks.size() == 1 ? 0 : static_cast<size_t>(l)]; }

  // Calls fn(buffer, elements, name) for every buffer of the arena.
  template <class Fn>
  void lay_out(const ModelConfig& m, int64_t max_batch, Recompute recompute, Fn&& fn) {
    const int64_t C = m.n_embd, H = m.n_head, T = m.block_size, V = m.vocab_size, L = m.n_layer;
    const int64_t N = max_batch * T;
    const bool csa = m.attention == AttentionKind::csa, qisa = m.attention == AttentionKind::qisa;
    const int64_t qkv = (csa ? 3 : 2) * C * N;
    const int64_t u = qisa ? (m.qisa_value == QisaValue::shared ? C : H * C) * N : 0;
    const int64_t vals = csa ? 0 : N * C;
    x_in.resize(static_cast<size_t>(L));
    for (auto& x : x_in) fn(x, N * C, "x_in", "[N, C]");
    blocks.resize(recompute == Recompute::blocks ? 1 : static_cast<size_t>(L));
    for (Block& b : blocks) {
      fn(b.ln1, N * C, "ln1", "[N, C]");
      fn(b.ln1_mean, N, "ln1_mean", "[N]");
      fn(b.ln1_rstd, N, "ln1_rstd", "[N]");
      fn(b.qkv, qkv, "qkv", "[N, 3C] csa, [N, 2C] qisa/qisa_a");
      fn(b.u, u, "u", "[N, H*C] per_head, [N, C] shared");
      fn(b.vals, vals, "vals", "[N, C]");
      fn(b.att_stat, max_batch * H * T, "att_stat", "[B, H, T]");
      fn(b.heads, N * C, "heads", "[N, C]");
      fn(b.x_mid, N * C, "x_mid", "[N, C]");
      fn(b.ln2, N * C, "ln2", "[N, C]");
      fn(b.ln2_mean, N, "ln2_mean", "[N]");
      fn(b.ln2_rstd, N, "ln2_rstd", "[N]");
      fn(b.fc_pre, N * 4 * C, "fc_pre", "[N, 4C]");
      fn(b.fc_act, N * 4 * C, "fc_act", "[N, 4C]");
    }
    fn(branch, N * C, "branch", "[N, C]");
    fn(x_final, N * C, "x_final", "[N, C]");
    fn(lnf, N * C, "lnf", "[N, C]");
    fn(lnf_mean, N, "lnf_mean", "[N]");
    fn(lnf_rstd, N, "lnf_rstd", "[N]");
    fn(logits, N * V, "logits", "[N, V]");
    fn(losses, N, "losses", "[N]");
    fn(loss_sum, 1, "loss_sum", "[1] float64");
    fn(idx, N, "idx", "[N] int32");
    fn(targets, N, "targets", "[N] int32");
    fn(dx, N * C, "dx", "[N, C]");
    fn(dln, N * C, "dln", "[N, C]");
    fn(dqkv, qkv, "dqkv", "like qkv");
    fn(du, u, "du", "like u");
    fn(dvals, vals, "dvals", "[N, C]");
    fn(dheads, N * C, "dheads", "[N, C]");
    fn(dbranch, N * C, "dbranch", "[N, C]");
    fn(dfc_pre, N * 4 * C, "dfc_pre", "[N, 4C]");
    fn(dfc_act, N * 4 * C, "dfc_act", "[N, 4C]");
  }
};

namespace {
template <class Buf>
inline constexpr bool kIsAct = std::is_same_v<Buf, ActBuffer>;
// Bytes of `count` elements of an arena buffer (ActBuffer: of the run's activation type).
template <class Buf>
int64_t element_bytes(DType act) {
  if constexpr (kIsAct<Buf>)
    return static_cast<int64_t>(dtype_bytes(act));
  else
    return static_cast<int64_t>(sizeof(*std::declval<Buf&>().get()));
}
}  // namespace

std::vector<GPT::ArenaItem> GPT::activation_arena(const ModelConfig& cfg, int64_t max_batch, Recompute recompute,
                                                  Precision precision) {
  std::vector<ArenaItem> items;
  Acts shape_only;  // its buffers stay empty
  const DType act = activation_dtype(precision);
  shape_only.lay_out(cfg, max_batch, recompute, [&](auto& buf, int64_t count, const char* name, const char* shape) {
    using Buf = std::remove_reference_t<decltype(buf)>;
    const int64_t bytes = count * element_bytes<Buf>(act);
    for (auto& it : items)
      if (it.name == name) {
        it.bytes += bytes;
        ++it.copies;
        return;
      }
    if constexpr (kIsAct<Buf>)
      items.push_back(ArenaItem{name, shape, bytes, 1, false, true});
    else
      items.push_back(ArenaItem{name, shape, bytes, 1, std::is_integral_v<std::remove_reference_t<decltype(*buf.get())>>, false});
  });
  return items;
}

int64_t GPT::activation_bytes(const ModelConfig& cfg, int64_t max_batch, Recompute recompute, Precision precision) {
  int64_t total = 0;
  for (const auto& it : activation_arena(cfg, max_batch, recompute, precision)) total += it.bytes;
  return total;
}

std::string GPT::pauli_name(int layer) { return block_param(layer, "attn.v.pauli"); }

GPT::GPT(const ModelConfig& cfg, Backend& backend, int64_t max_batch, int64_t flat_align, Recompute recompute,
         Precision precision)
    : cfg_(cfg), be_(backend), table_(cfg), max_batch_(max_batch), recompute_(recompute), precision_(precision) {
  QISA_CHECK(max_batch >= 1, "model max_batch is " + std::to_string(max_batch), "use at least one sequence");
  QISA_CHECK(cfg.n_embd % cfg.n_head == 0,
             "n_embd (" + std::to_string(cfg.n_embd) + ") is not divisible by n_head (" + std::to_string(cfg.n_head) + ")",
             "choose n_head dividing n_embd");
  const bool is_csa = cfg.attention == AttentionKind::csa;

  QISA_CHECK(flat_align >= 1, "flat_align is " + std::to_string(flat_align), "this is a bug in the caller");
  const int64_t flat = (table_.total() + flat_align - 1) / flat_align * flat_align;
  params_ = Buffer<float>(be_, flat, kZeroed);
  grads_ = Buffer<float>(be_, flat, kZeroed);
  if (precision == Precision::bf16) weights_bf16_ = Buffer<bf16>(be_, flat, kZeroed);

  for (int l = 0; l < cfg.n_layer; ++l) {
    auto off = [&](const char* rest) { return table_.offset(block_param(l, rest)); };
    Layer L{};
    L.ln1_w = off("ln1.weight");
    L.ln1_b = off("ln1.bias");
    L.qk_w = off("attn.q.weight");  // k (and v for csa) follow contiguously (ParamTable)
    if (!is_csa) L.qk_b = off("attn.q.bias");
    if (cfg.attention == AttentionKind::qisa) L.v_w = off("attn.v.weight");
    if (cfg.attention == AttentionKind::qisa_a) {
      L.rx = off("attn.v.rx");
      L.ry = off("attn.v.ry");
      L.ry2 = off("attn.v.ry2");
    }
    L.proj_w = off("attn.proj.weight");
    L.proj_b = off("attn.proj.bias");
    L.ln2_w = off("ln2.weight");
    L.ln2_b = off("ln2.bias");
    L.fc_w = off("mlp.fc.weight");
    L.fc_b = off("mlp.fc.bias");
    L.mproj_w = off("mlp.proj.weight");
    L.mproj_b = off("mlp.proj.bias");
    layers_.push_back(L);
  }
  pauli_.assign(cfg.n_layer, {});
  for (int l = 0; l < cfg.n_layer; ++l) pauli_terms_.emplace_back();

  acts_ = std::make_unique<Acts>();
  const DType act = activation_dtype(precision);
  acts_->lay_out(cfg, max_batch, recompute, [&](auto& buf, int64_t count, const char*, const char*) {
    using Buf = std::remove_reference_t<decltype(buf)>;
    if constexpr (kIsAct<Buf>)
      buf = ActBuffer(be_, static_cast<size_t>(count), act);
    else
      buf = Buf(be_, static_cast<size_t>(count));
    arena_bytes_ += static_cast<int64_t>(buf.bytes());
  });
}

GPT::~GPT() = default;

// ------------------------------------------------------------------ parameters

namespace {
// dst[i] = f(words of Philox block (i, a, b; key)) for i < n on `threads` threads, the blocks
// drawn kPhiloxBlocks at a time in SIMD lanes (the bits of philox4x32 one by one). f is a pure
// function of the block, so the values do not depend on the thread count
// (ModelInit.IsTheSameOnAnyThreadCount).
template <typename F>
void fill_parallel(float* dst, int64_t n, int threads, uint64_t key, uint32_t a, uint32_t b, F f) {
  const int64_t groups = (n + kPhiloxBlocks - 1) / kPhiloxBlocks;
#pragma omp parallel for num_threads(std::max(threads, 1)) schedule(static, 1024)
  for (int64_t g = 0; g < groups; ++g) {
    uint32_t words[4 * kPhiloxBlocks];
    const int64_t i0 = g * kPhiloxBlocks;
    philox_blocks(static_cast<uint64_t>(i0), a, b, key, words);
    const int64_t m = std::min<int64_t>(kPhiloxBlocks, n - i0);
    for (int64_t k = 0; k < m; ++k) dst[i0 + k] = f(words + 4 * k);
  }
}
}  // namespace

// PyTorch's default initialisation, from Philox counters (seed, stream = parameter index,
// element index). The normals are Box-Muller in double: a 124M model draws 39M of them, the
// most of its start-up time, so every parameter is filled on the backend's threads.
void GPT::init(uint64_t seed) {
  // Written in place where the host can address the backend's memory (the CPU's), else staged.
  std::vector<float> staging;
  float* base = params_.get();
  if (!be_.host_addressable()) {
    staging.resize(static_cast<size_t>(table_.total()));
    base = staging.data();
  }
  const auto& entries = table_.entries();
  const int threads = be_.threads();
  for (size_t e = 0; e < entries.size(); ++e) {
    const ParamEntry& p = entries[e];
    const std::string& n = p.name;
    auto ends_with = [&](const std::string& suffix) {
      return n.size() >= suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    float* dst = base + p.offset;
    const auto stream = static_cast<uint32_t>(e);
    if (n == "tok_emb.weight" || n == "pos_emb.weight") {  // nn.Embedding: N(0, 1)
      fill_parallel(dst, p.numel, threads, seed, kInitStream, stream,
                    [](const uint32_t* v) { return static_cast<float>(normal_double_of(v)); });
    } else if (n.find(".ln") != std::string::npos || n.rfind("ln_f.", 0) == 0) {  // LayerNorm 1 / 0
      const float v = ends_with(".weight") ? 1.0f : 0.0f;
      std::fill(dst, dst + p.numel, v);
    } else {
      // nn.Linear weight and bias: U(-1/sqrt(in), 1/sqrt(in)) with in = fan-in of the layer;
      // QISA L_h [H,C,C] as a Linear(C, C); QISA-A angles U(-pi, pi).
      double bound;
      if (ends_with(".rx") || ends_with(".ry") || ends_with(".ry2")) {
        bound = kPi;
      } else {
        int64_t fan_in = cfg_.n_embd;
        if (n.find("mlp.proj.") != std::string::npos) fan_in = 4 * static_cast<int64_t>(cfg_.n_embd);
        bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
      }
      fill_parallel(dst, p.numel, threads, seed, kInitStream, stream, [bound](const uint32_t* v) {
        return static_cast<float>((2.0 * uniform_double_of(v) - 1.0) * bound);
      });
    }
  }
  if (!staging.empty()) be_.upload(params_.get(), staging.data(), staging.size() * sizeof(float));
  round_weight_copy(Bf16Rounding::nearest, 0, 0);
  if (cfg_.attention != AttentionKind::csa) {
    for (int l = 0; l < cfg_.n_layer; ++l)
      set_pauli(l, draw_pauli_strings(seed, l, cfg_.n_head, cfg_.head_dim(), cfg_.n_qubits(),
                                      cfg_.pauli_identity_prob));
  }
}

std::vector<float> GPT::params_host() const {
  std::vector<float> h(static_cast<size_t>(table_.total()));
  be_.download(h.data(), params_.get(), h.size() * sizeof(float));
  return h;
}

std::vector<float> GPT::grads_host() const {
  std::vector<float> h(static_cast<size_t>(table_.total()));
  be_.download(h.data(), grads_.get(), h.size() * sizeof(float));
  return h;
}

void GPT::set_params_host(const std::vector<float>& flat) {
  QISA_CHECK(static_cast<int64_t>(flat.size()) == table_.total(),
             "parameter vector has " + std::to_string(flat.size()) + " floats, the model has " +
                 std::to_string(table_.total()),
             "the parameters come from a different model configuration");
  be_.upload(params_.get(), flat.data(), flat.size() * sizeof(float));
  round_weight_copy(Bf16Rounding::nearest, 0, 0);
}

void GPT::round_weight_copy(Bf16Rounding rounding, uint64_t seed, uint32_t step) {
  if (precision_ != Precision::bf16) return;
  const auto n = static_cast<int64_t>(params_.size());
  if (rounding == Bf16Rounding::stochastic && step > 0)
    be_.round_bf16_stochastic(weights_bf16_.get(), params_.get(), n, seed, step, 0);
  else
    be_.convert(weights_bf16_.get(), params_.get(), n);
}

CAct GPT::gemm_weight(int64_t offset) const {
  if (precision_ == Precision::bf16) return CAct(weights_bf16_.get()) + offset;
  return CAct(params_.get()) + offset;
}

std::vector<float> GPT::download_floats(CAct src, int64_t n) const {
  std::vector<float> h(static_cast<size_t>(n));
  if (src.t == DType::f32) {
    be_.download(h.data(), src.p, h.size() * sizeof(float));
    return h;
  }
  std::vector<bf16> raw(static_cast<size_t>(n));
  be_.download(raw.data(), src.p, raw.size() * sizeof(bf16));
  for (size_t i = 0; i < raw.size(); ++i) h[i] = bf16_to_float(raw[i]);
  return h;
}


void GPT::set_pauli(int layer, const std::vector<std::string>& strings) {
  QISA_CHECK(cfg_.attention != AttentionKind::csa, "csa attention has no Pauli strings",
             "Pauli strings belong to qisa and qisa_a models");
  QISA_CHECK(layer >= 0 && layer < cfg_.n_layer, "Pauli strings for block " + std::to_string(layer) +
                                                      " but the model has " + std::to_string(cfg_.n_layer),
             "the file was written for a different n_layer");
  const size_t want = static_cast<size_t>(cfg_.n_head) * static_cast<size_t>(cfg_.head_dim());
  QISA_CHECK(strings.size() == want,
             pauli_name(layer) + " has " + std::to_string(strings.size()) + " strings, the model needs " +
                 std::to_string(want) + " (n_head x head_dim)",
             "the file was written for a different model shape");
  std::vector<PauliTerm> terms;
  for (const auto& s : strings) {
    QISA_CHECK(static_cast<int>(s.size()) == cfg_.n_qubits(),
               pauli_name(layer) + " string '" + s + "' has " + std::to_string(s.size()) + " letters, the model needs " +
                   std::to_string(cfg_.n_qubits()),
               "n_qubits = ceil(log2(n_embd))");
    terms.push_back(pack_pauli(s));
  }
  pauli_[layer] = strings;
  pauli_terms_[layer] = Buffer<PauliTerm>(be_, terms.size());
  be_.upload(pauli_terms_[layer].get(), terms.data(), terms.size() * sizeof(PauliTerm));
}

// ------------------------------------------------------------------ forward

// Dropout at site (l, which) for a tensor of `elems_per_seq` elements per sequence: element
// indices count from the micro-batch's first sequence in the global batch (SPEC §2b).
Dropout GPT::dropout_at(int l, int which, const StepContext& ctx, uint64_t elems_per_seq) const {
  Dropout d;
  d.p = ctx.train ? static_cast<float>(cfg_.dropout) : 0.0f;
  d.seed = ctx.seed;
  d.step = ctx.step;
  d.site = dropout_site(l, which);
  d.elem_offset = static_cast<uint64_t>(ctx.seq_offset) * elems_per_seq;
  return d;
}

void GPT::check_batch(int64_t B, int T) const {
  QISA_CHECK(B >= 1 && B <= max_batch_,
             "batch of " + std::to_string(B) + " sequences, the model was sized for at most " + std::to_string(max_batch_),
             "raise the micro-batch size the model is built with");
  QISA_CHECK(T >= 1 && T <= cfg_.block_size,
             "sequence length " + std::to_string(T) + " outside [1, block_size=" + std::to_string(cfg_.block_size) + "]",
             "windows must not be longer than model.block_size");
}

double GPT::forward(const int32_t* idx, const int32_t* targets, int64_t B, int T, const StepContext& ctx) {
  if (!run_forward(idx, targets, B, T, ctx)) return 0.0;
  // Sum on the host in a fixed order (double): the loss does not depend on thread count.
  std::vector<float> losses = row_losses_host();
  double sum = 0.0;
  for (float x : losses) sum += x;
  return sum / static_cast<double>(B * T);
}

void GPT::forward_sum_loss(const int32_t* idx, const int32_t* targets, int64_t B, int T, const StepContext& ctx,
                           GradMode mode) {
  QISA_CHECK(targets != nullptr, "forward_sum_loss() without targets", "this is a bug in the caller");
  run_forward(idx, targets, B, T, ctx);
  be_.sum_to(acts_->loss_sum.get(), acts_->losses.get(), B * T, mode);
}

double GPT::loss_sum_host() const {
  double s = 0;
  be_.download(&s, acts_->loss_sum.get(), sizeof s);
  return s;
}

bool GPT::run_forward(const int32_t* idx, const int32_t* targets, int64_t B, int T, const StepContext& ctx) {
  check_batch(B, T);
  const int64_t C = cfg_.n_embd, V = cfg_.vocab_size, N = B * T;
  for (int64_t i = 0; i < N; ++i) {
    QISA_CHECK(idx[i] >= 0 && idx[i] < V, "token id " + std::to_string(idx[i]) + " outside the vocabulary of " + std::to_string(V),
               "the corpus and the model disagree on vocab_size");
    if (targets)
      QISA_CHECK(targets[i] >= 0 && targets[i] < V,
                 "target id " + std::to_string(targets[i]) + " outside the vocabulary of " + std::to_string(V),
                 "the corpus and the model disagree on vocab_size");
  }
  Acts& a = *acts_;
  float* P = params_.get();
  be_.upload(a.idx.get(), idx, static_cast<size_t>(N) * sizeof(int32_t));
  if (targets) be_.upload(a.targets.get(), targets, static_cast<size_t>(N) * sizeof(int32_t));
  last_B_ = B;
  last_T_ = T;
  have_targets_ = targets != nullptr;
  last_ctx_ = ctx;
  logits_valid_ = false;  // until the head has written them

  be_.embedding_forward(a.x_in[0].get(), a.idx.get(), P + table_.offset("tok_emb.weight"),
                        P + table_.offset("pos_emb.weight"), B, T, static_cast<int>(C));
  for (int l = 0; l < cfg_.n_layer; ++l) block_forward(l, B, T, ctx, true);
  be_.layernorm_forward(a.lnf.get(), a.lnf_mean.get(), a.lnf_rstd.get(), a.x_final.get(), P + table_.offset("ln_f.weight"),
                        P + table_.offset("ln_f.bias"), N, static_cast<int>(C));
  be_.linear_forward(a.logits.get(), a.lnf.get(), gemm_weight(table_.offset("head.weight")), P + table_.offset("head.bias"), N,
                     static_cast<int>(C), static_cast<int>(V));
  logits_valid_ = true;
  if (!targets) return false;
  be_.cross_entropy_forward(a.losses.get(), a.logits.get(), a.targets.get(), N, static_cast<int>(V));
  return true;
}

// Block l from its input x_in[l] into its Block: everything backward needs. `to_output` also
// computes the mlp branch and the block's output (x_in[l+1], or x_final after the last block);
// backward's recomputation does not need them.
void GPT::block_forward(int l, int64_t B, int T, const StepContext& ctx, bool to_output) {
  const int64_t C = cfg_.n_embd, N = B * T;
  const Layer& L = layers_[l];
  Acts& a = *acts_;
  Acts::Block& b = a.block(l);
  float* P = params_.get();
  auto resid_dropout = [&](int which) { return dropout_at(l, which, ctx, static_cast<uint64_t>(T) * C); };
  const CAct x_in = a.x_in[l].get();
  be_.layernorm_forward(b.ln1.get(), b.ln1_mean.get(), b.ln1_rstd.get(), x_in, P + L.ln1_w, P + L.ln1_b, N,
                        static_cast<int>(C));
  attention_forward(l, B, T, ctx);
  be_.linear_forward(a.branch.get(), b.heads.get(), gemm_weight(L.proj_w), P + L.proj_b, N, static_cast<int>(C),
                     static_cast<int>(C));
  be_.dropout_add_forward(b.x_mid.get(), x_in, a.branch.get(), N * C, resid_dropout(kSiteAttnResid));
  be_.layernorm_forward(b.ln2.get(), b.ln2_mean.get(), b.ln2_rstd.get(), b.x_mid.get(), P + L.ln2_w, P + L.ln2_b, N,
                        static_cast<int>(C));
  be_.linear_forward(b.fc_pre.get(), b.ln2.get(), gemm_weight(L.fc_w), P + L.fc_b, N, static_cast<int>(C),
                     static_cast<int>(4 * C));
  be_.activation_forward(b.fc_act.get(), b.fc_pre.get(), N * 4 * C, cfg_.activation);
  block_held_ = l;
  if (!to_output) return;
  const Act x_out = (l + 1 < cfg_.n_layer) ? a.x_in[l + 1].get() : a.x_final.get();
  be_.linear_forward(a.branch.get(), b.fc_act.get(), gemm_weight(L.mproj_w), P + L.mproj_b, N, static_cast<int>(4 * C),
                     static_cast<int>(C));
  be_.dropout_add_forward(x_out, b.x_mid.get(), a.branch.get(), N * C, resid_dropout(kSiteMlpResid));
}

void GPT::attention_forward(int l, int64_t B, int T, const StepContext& ctx) {
  const int C = cfg_.n_embd, H = cfg_.n_head, D = cfg_.head_dim(), nq = cfg_.n_qubits();
  const int64_t N = B * T;
  const Layer& L = layers_[l];
  Acts::Block& b = acts_->block(l);
  float* P = params_.get();
  switch (cfg_.attention) {
    case AttentionKind::csa: {
      // q|k|v = a [Wq;Wk;Wv]^T (one matmul over the adjacent weights), then softmax attention.
      be_.linear_forward(b.qkv.get(), b.ln1.get(), gemm_weight(L.qk_w), nullptr, N, C, 3 * C);
      const Dropout d = dropout_at(l, kSiteAttn, ctx, static_cast<uint64_t>(H) * T * T);
      const CAct q = b.qkv.get();
      be_.csa_forward(b.heads.get(), C, b.att_stat.get(), q, q + C, q + 2 * C, 3 * C, B, T, H, D,
                      1.0f / std::sqrt(static_cast<float>(C)), d);
      break;
    }
    case AttentionKind::qisa:
    case AttentionKind::qisa_a: {
      QISA_CHECK(pauli_terms_[l].get() != nullptr, "block " + std::to_string(l) + " has no Pauli strings",
                 "call init() or load the strings from the model file");
      be_.linear_forward(b.qkv.get(), b.ln1.get(), gemm_weight(L.qk_w), P + L.qk_b, N, C, 2 * C);
      if (cfg_.attention == AttentionKind::qisa && cfg_.qisa_value == QisaValue::shared) {
        // u = a L^T once per token (L [C, C]); head h measures that same u with its D strings.
        be_.linear_forward(b.u.get(), b.ln1.get(), gemm_weight(L.v_w), nullptr, N, C, C);
        for (int h = 0; h < H; ++h)
          be_.pauli_value_forward(b.vals.get() + h * D, C, b.u.get(), C, pauli_terms_[l].get() + h * D, N, 1, D, C,
                                  nq);
      } else if (cfg_.attention == AttentionKind::qisa) {
        // u_h = a L_h^T for every head in one matmul: L viewed as [H*C, C].
        be_.linear_forward(b.u.get(), b.ln1.get(), gemm_weight(L.v_w), nullptr, N, C, H * C);
        be_.pauli_value_forward(b.vals.get(), C, b.u.get(), H * C, pauli_terms_[l].get(), N, H, D, C, nq);
      } else {
        be_.qisa_a_forward(b.vals.get(), C, b.ln1.get(), C, P + L.rx, P + L.ry, P + L.ry2, pauli_terms_[l].get(), N,
                           H, D, C, nq);
      }
      const CAct q = b.qkv.get();
      be_.gaussian_attention_forward(b.heads.get(), C, b.att_stat.get(), q, q + C, 2 * C, b.vals.get(), C, B, T, H, D,
                                     cfg_.mask, cfg_.attn_score());
      break;
    }
  }
}

// ------------------------------------------------------------------ backward

void GPT::backward(float loss_scale, GradMode mode, const std::function<void(int64_t)>& on_ready) {
  QISA_CHECK(have_targets_, "backward() without a forward pass with targets", "this is a bug in the caller");
  const int64_t B = last_B_;
  const int T = last_T_;
  const int C = cfg_.n_embd, V = static_cast<int>(cfg_.vocab_size);
  const int64_t N = B * T;
  const StepContext& ctx = last_ctx_;
  Acts& a = *acts_;
  float* P = params_.get();
  float* G = grads_.get();
  constexpr GradMode kSet = GradMode::overwrite;

  // logits -> dlogits in place; then the head and the final layernorm. Activation gradients are
  // stored by their first producer and added to by the others; parameter gradients follow `mode`.
  logits_valid_ = false;
  be_.cross_entropy_backward(a.logits.get(), a.logits.get(), a.targets.get(), N, V, loss_scale);
  be_.linear_backward(a.dln.get(), G + table_.offset("head.weight"), G + table_.offset("head.bias"), a.logits.get(),
                      a.lnf.get(), gemm_weight(table_.offset("head.weight")), N, C, V, kSet, mode);
  be_.layernorm_backward(a.dx.get(), G + table_.offset("ln_f.weight"), G + table_.offset("ln_f.bias"), a.dln.get(),
                         a.x_final.get(), P + table_.offset("ln_f.weight"), a.lnf_mean.get(), a.lnf_rstd.get(), N, C,
                         kSet, mode);
  have_targets_ = false;  // the logits are gone
  // ln_f and head are the last entries of the table: final now.
  if (on_ready) on_ready(table_.offset("ln_f.weight"));

  // a.dx holds dL/d(block output); each block turns it into dL/d(block input) in place.
  for (int l = cfg_.n_layer - 1; l >= 0; --l) {
    if (recompute_ == Recompute::blocks && block_held_ != l) block_forward(l, B, T, ctx, false);
    block_backward(l, B, T, mode);
    if (on_ready) on_ready(layers_[l].ln1_w);  // block l starts with ln1.weight
  }
  float* dpos = G + table_.offset("pos_emb.weight");
  be_.embedding_backward(G + table_.offset("tok_emb.weight"), dpos, a.dx.get(), a.idx.get(), B, T, C, V, mode);
  if (mode == kSet && T < cfg_.block_size)  // positions >= T had no token: their gradient is 0
    be_.zero(dpos + static_cast<int64_t>(T) * C, static_cast<size_t>(cfg_.block_size - T) * C * sizeof(float));
  if (on_ready) on_ready(0);
}

// a.dx: dL/d(output of block l) in, dL/d(input of block l) out; block l's parameter gradients
// stored or added (mode).
void GPT::block_backward(int l, int64_t B, int T, GradMode mode) {
  const int C = cfg_.n_embd;
  const int64_t N = B * T;
  const Layer& L = layers_[l];
  Acts& a = *acts_;
  Acts::Block& b = a.block(l);
  float* P = params_.get();
  float* G = grads_.get();
  constexpr GradMode kSet = GradMode::overwrite, kAdd = GradMode::accumulate;
  auto resid_dropout = [&](int which) { return dropout_at(l, which, last_ctx_, static_cast<uint64_t>(T) * C); };
  // x_out = x_mid + dropout(mlp_out): dx passes through unchanged to x_mid (the residual stream
  // gradient a.dx is only ever added to)
  be_.dropout_add_backward(nullptr, a.dbranch.get(), a.dx.get(), N * C, resid_dropout(kSiteMlpResid), kSet);
  be_.linear_backward(a.dfc_act.get(), G + L.mproj_w, G + L.mproj_b, a.dbranch.get(), b.fc_act.get(), gemm_weight(L.mproj_w), N,
                      4 * C, C, kSet, mode);
  be_.activation_backward(a.dfc_pre.get(), a.dfc_act.get(), b.fc_pre.get(), N * 4 * C, cfg_.activation, kSet);
  be_.linear_backward(a.dln.get(), G + L.fc_w, G + L.fc_b, a.dfc_pre.get(), b.ln2.get(), gemm_weight(L.fc_w), N, C, 4 * C, kSet,
                      mode);
  be_.layernorm_backward(a.dx.get(), G + L.ln2_w, G + L.ln2_b, a.dln.get(), b.x_mid.get(), P + L.ln2_w,
                         b.ln2_mean.get(), b.ln2_rstd.get(), N, C, kAdd, mode);
  // x_mid = x_in + dropout(attn_proj)
  be_.dropout_add_backward(nullptr, a.dbranch.get(), a.dx.get(), N * C, resid_dropout(kSiteAttnResid), kSet);
  be_.linear_backward(a.dheads.get(), G + L.proj_w, G + L.proj_b, a.dbranch.get(), b.heads.get(), gemm_weight(L.proj_w), N, C, C,
                      kSet, mode);
  attention_backward(l, B, T, mode);  // dheads -> dln (d of ln1 output) and attention parameter grads
  be_.layernorm_backward(a.dx.get(), G + L.ln1_w, G + L.ln1_b, a.dln.get(), a.x_in[l].get(), P + L.ln1_w,
                         b.ln1_mean.get(), b.ln1_rstd.get(), N, C, kAdd, mode);
}

// dheads -> dln (stored: the first producer of dL/d(ln1 output)); parameter gradients by mode.
void GPT::attention_backward(int l, int64_t B, int T, GradMode mode) {
  constexpr GradMode kSet = GradMode::overwrite, kAdd = GradMode::accumulate;
  const int C = cfg_.n_embd, H = cfg_.n_head, D = cfg_.head_dim(), nq = cfg_.n_qubits();
  const int64_t N = B * T;
  const Layer& L = layers_[l];
  Acts& a = *acts_;
  Acts::Block& b = a.block(l);
  const StepContext& ctx = last_ctx_;
  float* P = params_.get();
  float* G = grads_.get();
  const CAct q = b.qkv.get();
  const Act dq = a.dqkv.get();
  switch (cfg_.attention) {
    case AttentionKind::csa: {
      const Dropout d = dropout_at(l, kSiteAttn, ctx, static_cast<uint64_t>(H) * T * T);
      be_.csa_backward(dq, dq + C, dq + 2 * C, a.dheads.get(), C, b.att_stat.get(), q, q + C, q + 2 * C, 3 * C, B, T, H, D,
                       1.0f / std::sqrt(static_cast<float>(C)), d, kSet);
      be_.linear_backward(a.dln.get(), G + L.qk_w, nullptr, dq, b.ln1.get(), gemm_weight(L.qk_w), N, C, 3 * C, kSet, mode);
      break;
    }
    case AttentionKind::qisa:
    case AttentionKind::qisa_a: {
      be_.gaussian_attention_backward(dq, dq + C, 2 * C, a.dvals.get(), C, a.dheads.get(), C, b.att_stat.get(), q, q + C,
                                      b.vals.get(), B, T, H, D, cfg_.mask, cfg_.attn_score(), kSet);
      be_.linear_backward(a.dln.get(), G + L.qk_w, G + L.qk_b, dq, b.ln1.get(), gemm_weight(L.qk_w), N, C, 2 * C, kSet, mode);
      if (cfg_.attention == AttentionKind::qisa && cfg_.qisa_value == QisaValue::shared) {
        // dL/du sums over the heads (each head adds its strings' part), then ONE GEMM backward.
        for (int h = 0; h < H; ++h)
          be_.pauli_value_backward(a.du.get(), C, a.dvals.get() + h * D, C, b.u.get(), pauli_terms_[l].get() + h * D,
                                   N, 1, D, C, nq, h == 0 ? kSet : kAdd);
        be_.linear_backward(a.dln.get(), G + L.v_w, nullptr, a.du.get(), b.ln1.get(), gemm_weight(L.v_w), N, C, C, kAdd, mode);
      } else if (cfg_.attention == AttentionKind::qisa) {
        be_.pauli_value_backward(a.du.get(), H * C, a.dvals.get(), C, b.u.get(), pauli_terms_[l].get(), N, H, D, C, nq,
                                 kSet);
        be_.linear_backward(a.dln.get(), G + L.v_w, nullptr, a.du.get(), b.ln1.get(), gemm_weight(L.v_w), N, C, H * C, kAdd, mode);
      } else {
        be_.qisa_a_backward(a.dln.get(), C, G + L.rx, G + L.ry, G + L.ry2, a.dvals.get(), C, b.ln1.get(), P + L.rx,
                            P + L.ry, P + L.ry2, pauli_terms_[l].get(), N, H, D, C, nq, kAdd, mode);
      }
      break;
    }
  }
}

// ------------------------------------------------------------------ results

std::vector<float> GPT::logits_host() const {
  QISA_CHECK(have_targets_ || last_B_ > 0, "no forward pass yet", "call forward() first");
  QISA_CHECK(logits_valid_,
             "logits_host() after backward(): the logits buffer now holds dL/dlogits (cross-entropy backward "
             "runs in place on it)",
             "read the logits between forward() and backward(), or run forward() again");
  return download_floats(acts_->logits.get(), last_B_ * last_T_ * cfg_.vocab_size);
}

std::vector<float> GPT::row_losses_host() const {
  std::vector<float> h(static_cast<size_t>(last_B_ * last_T_));
  be_.download(h.data(), acts_->losses.get(), h.size() * sizeof(float));
  return h;
}

std::vector<float> GPT::head_outputs_host(int layer) const {
  QISA_CHECK(layer >= 0 && layer < cfg_.n_layer, "no block " + std::to_string(layer), "blocks are 0..n_layer-1");
  QISA_CHECK(recompute_ == Recompute::none || layer == block_held_,
             "the head outputs of block " + std::to_string(layer) + " are gone: with recompute blocks the model keeps "
             "one block's activations (now block " + std::to_string(block_held_) + "'s)",
             "build the model with Recompute::none (train.recompute: none) to read every block's head outputs");
  return download_floats(acts_->block(layer).heads.get(), last_B_ * last_T_ * cfg_.n_embd);
}

GPT::QueryKeys GPT::query_keys_host(int layer) const {
  QISA_CHECK(layer >= 0 && layer < cfg_.n_layer, "no block " + std::to_string(layer), "blocks are 0..n_layer-1");
  QISA_CHECK(recompute_ == Recompute::none || layer == block_held_,
             "the queries and keys of block " + std::to_string(layer) + " are gone: with recompute blocks the model "
             "keeps one block's activations (now block " + std::to_string(block_held_) + "'s)",
             "build the model with Recompute::none (train.recompute: none) to read every block's attention");
  // qkv [N, 3C] (csa: q | k | v) or [N, 2C] (qisa, qisa_a: q | k)
  const int C = cfg_.n_embd, ld = cfg_.attention == AttentionKind::csa ? 3 * C : 2 * C;
  const int64_t N = last_B_ * last_T_;
  const std::vector<float> qkv = download_floats(acts_->block(layer).qkv.get(), N * ld);
  QueryKeys r;
  r.q.resize(static_cast<size_t>(N * C));
  r.k.resize(static_cast<size_t>(N * C));
  for (int64_t i = 0; i < N; ++i) {
    std::copy_n(qkv.begin() + i * ld, C, r.q.begin() + i * C);
    std::copy_n(qkv.begin() + i * ld + C, C, r.k.begin() + i * C);
  }
  return r;
}

}  // namespace qisa
