// NCCL's function table (kernels/cuda/nccl_api.h): not loaded at start, loaded from the real
// libnccl on first use (this CI machine has the library but no GPU: the calls used here need
// neither a GPU nor a network), a missing library or an NCCL error as our one-line error, and a
// test double put in the library's place.
#include <gtest/gtest.h>

#include <string>

#include "kernels/error.h"
#include "test_util.h"
#if defined(QISA_HAVE_CUDA)
#include "kernels/cuda/nccl_api.h"
#endif

namespace {

#if defined(QISA_HAVE_CUDA)
using qisa::cuda::nccl_api;
using qisa::cuda::NcclApi;

TEST(NcclApi, NotMappedAtStartLoadedOnFirstUse) {
  ASSERT_FALSE(qisa::test::library_mapped("libnccl.so")) << "libnccl was loaded at start: is it linked again?";
  const NcclApi& api = nccl_api();
  EXPECT_TRUE(qisa::test::library_mapped("libnccl.so"));
  EXPECT_EQ(api.source, "libnccl.so." + std::to_string(NCCL_MAJOR));
  int version = 0;
  QISA_NCCL_CHECK(api.ncclGetVersion(&version), "");
  EXPECT_EQ(version / 10000, NCCL_MAJOR) << version;  // NCCL_VERSION(X,Y,Z) = X*10000 + Y*100 + Z
  EXPECT_EQ(&nccl_api(), &api);  // loaded once
}

TEST(NcclApi, AFailedCallIsOneLineNamingTheCallAndNcclsReason) {
  try {
    QISA_NCCL_CHECK(nccl_api().ncclGetVersion(nullptr), "the hint");  // NCCL: invalid argument
    FAIL() << "ncclGetVersion(nullptr) succeeded";
  } catch (const qisa::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("test_kernels_nccl_api.cpp:"), std::string::npos) << what;
    EXPECT_NE(what.find(": ncclGetVersion(...) failed: "), std::string::npos) << what;
    EXPECT_NE(what.find(nccl_api().ncclGetErrorString(ncclInvalidArgument)), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    EXPECT_EQ(e.hint(), "the hint");
  }
  // ncclInProgress is success for non-blocking calls that say so, an error otherwise
  EXPECT_NO_THROW(qisa::cuda::check_nccl(ncclInProgress, "api.ncclCommInitRankConfig(...)", "", true));
  EXPECT_THROW(qisa::cuda::check_nccl(ncclInProgress, "api.ncclAllReduce(...)", ""), qisa::Error);
}

TEST(NcclApi, AMissingLibraryIsAnErrorWithAHint) {
  try {
    qisa::cuda::load_nccl_library("libnccl.so.999");
    FAIL() << "libnccl.so.999 loaded";
  } catch (const qisa::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot load libnccl.so.999"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("dist.comm: mpi"), std::string::npos) << e.hint();
  }
}

// A double takes the library's place, and gives it back.
ncclResult_t double_version(int* v) {
  *v = 12345;
  return ncclSuccess;
}

TEST(NcclApi, ADoubleTakesTheLibrarysPlace) {
  NcclApi fake;
  fake.ncclGetVersion = double_version;
  fake.source = "test double";
  qisa::cuda::use_nccl_api(&fake);
  int v = 0;
  QISA_NCCL_CHECK(nccl_api().ncclGetVersion(&v), "");
  EXPECT_EQ(v, 12345);
  EXPECT_EQ(nccl_api().source, "test double");
  qisa::cuda::use_nccl_api(nullptr);
  QISA_NCCL_CHECK(nccl_api().ncclGetVersion(&v), "");
  EXPECT_EQ(v / 10000, NCCL_MAJOR);
}
#else
TEST(NcclApi, NotBuilt) { GTEST_SKIP() << "built without CUDA: no NCCL table"; }
#endif

}  // namespace
