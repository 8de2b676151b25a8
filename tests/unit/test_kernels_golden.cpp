// Golden files (SPEC §4): value layer, QISA-A value and Gaussian attention (both masks).
// The double templates must agree to ~1e-9; the float CpuBackend within the SPEC §4 float32
// tolerances (forward 1e-5, gradients 1e-4, as max|got - want| / max|want| per tensor).
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "io/hdf5.h"
#include "kernels/backend.h"
#include "kernels/cpu/gaussian_attention.h"
#include "kernels/cpu/pauli_value.h"
#include "kernels/cpu/qisa_a.h"
#include "kernels/pauli.h"
#include "test_util.h"

namespace {

using qisa::GradMode;

using qisa::test::max_rel_err;
using Vec = std::vector<double>;
using FVec = std::vector<float>;
constexpr double kDoubleTol = 1e-12, kFwdTol = 1e-5, kGradTol = 1e-4;

FVec to_float(const Vec& v) { return FVec(v.begin(), v.end()); }

// Check and print (for the log) one tensor's SPEC §4 measure.
template <typename A>
void expect_close(const char* what, const A& got, const Vec& want, double tol) {
  const double e = max_rel_err(got, want);
  std::printf("    %-10s %.2e (tol %.0e)\n", what, e, tol);
  EXPECT_LT(e, tol) << what;
}

std::vector<std::string> cases(const qisa::h5::File& f) {
  std::vector<std::string> out;
  for (const auto& name : f.list("/"))
    if (name.rfind("case", 0) == 0) out.push_back("/" + name);
  return out;
}

// A float buffer in the backend, filled from host (or `fill`).
struct Dev {
  qisa::Buffer<float> buf;
  Dev(qisa::Backend& be, const FVec& host) : buf(be, host.size()) {
    be.upload(buf.get(), host.data(), host.size() * sizeof(float));
  }
  Dev(qisa::Backend& be, size_t n, float fill) : buf(be, n) {
    FVec h(n, fill);
    be.upload(buf.get(), h.data(), n * sizeof(float));
  }
  float* get() const { return buf.get(); }
  FVec host(qisa::Backend& be) const {
    FVec h(buf.size());
    be.download(h.data(), buf.get(), buf.bytes());
    return h;
  }
};

TEST(Golden, ValueLayer) {
  qisa::h5::File f(qisa::test::golden("value_layer.h5"), qisa::h5::File::Mode::read);
  auto be = qisa::make_cpu_backend(2);
  qisa::cpu::Workspace ws;
  const auto names = cases(f);
  ASSERT_FALSE(names.empty());
  for (const auto& c : names) {
    SCOPED_TRACE(c);
    std::printf("  value_layer %s\n", c.c_str());
    const int C = static_cast<int>(f.attr_int(c, "n_embd")), n = static_cast<int>(f.attr_int(c, "n_qubits"));
    std::vector<hsize_t> du, dv;
    const auto terms = qisa::pack_paulis(f.read_strings(c + "/pauli"), n);
    const Vec u = f.read<double>(c + "/u", &du), v = f.read<double>(c + "/v", &dv);
    const Vec gv = f.read<double>(c + "/grad_v"), gu = f.read<double>(c + "/grad_u");
    const int64_t M = static_cast<int64_t>(du[0]);
    const int D = static_cast<int>(dv[1]);
    ASSERT_EQ(static_cast<int>(du[1]), C);
    ASSERT_EQ(static_cast<int>(terms.size()), D);
    // double templates
    Vec v64(M * D), gu64(M * C, 0.0);
    qisa::cpu::pauli_value_forward(v64.data(), D, u.data(), C, terms.data(), M, 1, D, C, n, ws);
    qisa::cpu::pauli_value_backward(gu64.data(), C, gv.data(), D, u.data(), terms.data(), M, 1, D, C, n, ws, GradMode::accumulate);
    expect_close("f64 v", v64, v, kDoubleTol);
    expect_close("f64 gu", gu64, gu, kDoubleTol);
    // float backend
    Dev U(*be, to_float(u)), V(*be, M * D, 0.f), GV(*be, to_float(gv)), GU(*be, M * C, 0.f);
    qisa::Buffer<qisa::PauliTerm> T(*be, terms.size());
    be->upload(T.get(), terms.data(), T.bytes());
    be->pauli_value_forward(V.get(), D, U.get(), C, T.get(), M, 1, D, C, n);
    be->pauli_value_backward(GU.get(), C, GV.get(), D, U.get(), T.get(), M, 1, D, C, n, GradMode::accumulate);
    expect_close("f32 v", V.host(*be), v, kFwdTol);
    expect_close("f32 gu", GU.host(*be), gu, kGradTol);
  }
}

TEST(Golden, QisaAValue) {
  qisa::h5::File f(qisa::test::golden("qisa_a_value.h5"), qisa::h5::File::Mode::read);
  auto be = qisa::make_cpu_backend(2);
  qisa::cpu::Workspace ws;
  const auto names = cases(f);
  ASSERT_FALSE(names.empty());
  for (const auto& c : names) {
    SCOPED_TRACE(c);
    std::printf("  qisa_a_value %s\n", c.c_str());
    const int C = static_cast<int>(f.attr_int(c, "n_embd")), n = static_cast<int>(f.attr_int(c, "n_qubits"));
    std::vector<hsize_t> dx, dv;
    const auto terms = qisa::pack_paulis(f.read_strings(c + "/pauli"), n);
    const Vec x = f.read<double>(c + "/x", &dx), v = f.read<double>(c + "/v", &dv), gv = f.read<double>(c + "/grad_v");
    const Vec rx = f.read<double>(c + "/rx"), ry = f.read<double>(c + "/ry"), ry2 = f.read<double>(c + "/ry2");
    const Vec gx = f.read<double>(c + "/grad_x"), grx = f.read<double>(c + "/grad_rx"),
              gry = f.read<double>(c + "/grad_ry"), gry2 = f.read<double>(c + "/grad_ry2");
    const int64_t M = static_cast<int64_t>(dx[0]);
    const int D = static_cast<int>(dv[1]);
    ASSERT_EQ(static_cast<int>(dx[1]), C);
    // double templates
    Vec v64(M * D), gx64(M * C, 0.0), grx64(n, 0.0), gry64(n, 0.0), gry264(n, 0.0);
    qisa::cpu::qisa_a_forward(v64.data(), D, x.data(), C, rx.data(), ry.data(), ry2.data(), terms.data(), M, 1, D, C, n,
                              ws);
    qisa::cpu::qisa_a_backward(gx64.data(), C, grx64.data(), gry64.data(), gry264.data(), gv.data(), D, x.data(),
                               rx.data(), ry.data(), ry2.data(), terms.data(), M, 1, D, C, n, ws, GradMode::accumulate, GradMode::accumulate);
    expect_close("f64 v", v64, v, kDoubleTol);
    expect_close("f64 gx", gx64, gx, kDoubleTol);
    expect_close("f64 grx", grx64, grx, kDoubleTol);
    expect_close("f64 gry", gry64, gry, kDoubleTol);
    expect_close("f64 gry2", gry264, gry2, kDoubleTol);
    // float backend
    Dev X(*be, to_float(x)), V(*be, M * D, 0.f), GV(*be, to_float(gv)), GX(*be, M * C, 0.f);
    Dev RX(*be, to_float(rx)), RY(*be, to_float(ry)), RY2(*be, to_float(ry2));
    Dev GRX(*be, n, 0.f), GRY(*be, n, 0.f), GRY2(*be, n, 0.f);
    qisa::Buffer<qisa::PauliTerm> T(*be, terms.size());
    be->upload(T.get(), terms.data(), T.bytes());
    be->qisa_a_forward(V.get(), D, X.get(), C, RX.get(), RY.get(), RY2.get(), T.get(), M, 1, D, C, n);
    be->qisa_a_backward(GX.get(), C, GRX.get(), GRY.get(), GRY2.get(), GV.get(), D, X.get(), RX.get(), RY.get(),
                        RY2.get(), T.get(), M, 1, D, C, n, GradMode::accumulate, GradMode::accumulate);
    expect_close("f32 v", V.host(*be), v, kFwdTol);
    expect_close("f32 gx", GX.host(*be), gx, kGradTol);
    expect_close("f32 grx", GRX.host(*be), grx, kGradTol);
    expect_close("f32 gry", GRY.host(*be), gry, kGradTol);
    expect_close("f32 gry2", GRY2.host(*be), gry2, kGradTol);
  }
}

TEST(Golden, GaussianAttention) {
  qisa::h5::File f(qisa::test::golden("gaussian_attention.h5"), qisa::h5::File::Mode::read);
  auto be = qisa::make_cpu_backend(2);
  qisa::cpu::Workspace ws;
  std::vector<hsize_t> dims;
  const Vec q = f.read<double>("/q", &dims), k = f.read<double>("/k"), v = f.read<double>("/v"),
            go = f.read<double>("/grad_out");
  ASSERT_EQ(dims.size(), 3u);
  const int64_t B = static_cast<int64_t>(dims[0]);
  const int T = static_cast<int>(dims[1]), D = static_cast<int>(dims[2]);
  const int64_t n = B * T * D;
  for (auto mask : {qisa::AttnMask::causal, qisa::AttnMask::reference}) {
    const std::string g = mask == qisa::AttnMask::causal ? "/causal" : "/reference";
    SCOPED_TRACE(g);
    std::printf("  gaussian_attention %s\n", g.c_str());
    const Vec out = f.read<double>(g + "/out"), gq = f.read<double>(g + "/grad_q"), gk = f.read<double>(g + "/grad_k"),
              gvv = f.read<double>(g + "/grad_v");
    Vec o64(n), stat(B * T), gq64(n, 0.0), gk64(n, 0.0), gv64(n, 0.0);
    qisa::cpu::gaussian_attention_forward(o64.data(), D, stat.data(), q.data(), k.data(), D, v.data(), D, B, T, 1, D,
                                          mask, qisa::AttnScore{}, ws);
    qisa::cpu::gaussian_attention_backward(gq64.data(), gk64.data(), D, gv64.data(), D, go.data(), D, stat.data(),
                                           q.data(), k.data(), v.data(), B, T, 1, D, mask, qisa::AttnScore{}, ws, GradMode::accumulate);
    expect_close("f64 out", o64, out, kDoubleTol);
    expect_close("f64 gq", gq64, gq, kDoubleTol);
    expect_close("f64 gk", gk64, gk, kDoubleTol);
    expect_close("f64 gv", gv64, gvv, kDoubleTol);
    Dev Q(*be, to_float(q)), K(*be, to_float(k)), V(*be, to_float(v)), GO(*be, to_float(go));
    Dev O(*be, n, 0.f), A(*be, B * T, 0.f), GQ(*be, n, 0.f), GK(*be, n, 0.f), GV(*be, n, 0.f);
    be->gaussian_attention_forward(O.get(), D, A.get(), Q.get(), K.get(), D, V.get(), D, B, T, 1, D, mask, qisa::AttnScore{});
    be->gaussian_attention_backward(GQ.get(), GK.get(), D, GV.get(), D, GO.get(), D, A.get(), Q.get(), K.get(), V.get(),
                                    B, T, 1, D, mask, qisa::AttnScore{}, GradMode::accumulate);
    expect_close("f32 out", O.host(*be), out, kFwdTol);
    expect_close("f32 gq", GQ.host(*be), gq, kGradTol);
    expect_close("f32 gk", GK.host(*be), gk, kGradTol);
    expect_close("f32 gv", GV.host(*be), gvv, kGradTol);
  }
}

}  // namespace
