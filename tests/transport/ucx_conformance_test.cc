// The conformance suite over UCX: shared memory (posix; sysv + cma) and TCP loopback.
#include "tests/transport/conformance.h"

namespace weft::transport::testing {

#if WEFT_HAVE_UCX
INSTANTIATE_TEST_SUITE_P(
    Ucx, TransportConformance,
    ::testing::Values(BackendConfig{"ucx_posix", "ucx", {{"UCX_TLS", "posix"}}},
                      BackendConfig{"ucx_sysv_cma", "ucx", {{"UCX_TLS", "sysv,cma"}}},
                      BackendConfig{"ucx_tcp", "ucx", {{"UCX_TLS", "tcp"}}}),
    backendConfigName);
#else
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(TransportConformance);
#endif

}  // namespace weft::transport::testing
