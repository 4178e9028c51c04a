// The conformance suite over UCX: shared memory (posix; sysv + cma), TCP loopback, the
// default transport selection, and tcp + posix.
#include "tests/transport/conformance.h"

namespace weft::transport::testing {

#ifdef WEFT_HAVE_UCX
INSTANTIATE_TEST_SUITE_P(
    Ucx, TransportConformance,
    ::testing::Values(BackendConfig{"ucx_posix", "ucx", {{"UCX_TLS", "posix"}}},
                      BackendConfig{"ucx_sysv_cma", "ucx", {{"UCX_TLS", "sysv,cma"}}},
                      // UCX_TLS unset, as users run it: same-host peers over shared memory
                      // and cma without UCX's error mode (UcxState::ucxPeerErrors).
                      BackendConfig{"ucx_default", "ucx", {}},
                      // Rendezvous by put: UCX adds a tcp rma_bw lane next to cma, so the
                      // endpoint is made again in UCX's error mode (UcxEndpoint::create).
                      BackendConfig{"ucx_default_put", "ucx", {{"UCX_RNDV_SCHEME", "put_zcopy"}}},
                      // tcp + posix: no cma, so UCX would add tcp lanes for a same-host
                      // peer and the context keeps UCX's error mode for it.
                      BackendConfig{"ucx_tcp_posix", "ucx", {{"UCX_TLS", "tcp,posix"}}},
                      // A killed peer's sockets reset at once over tcp; UCX's 1 s keepalive
                      // (WEFT_UCX_KEEPALIVE) only added spurious "Endpoint timeout"
                      // failures when a loaded 2-core host starved a rank for a second.
                      BackendConfig{"ucx_tcp",
                                    "ucx",
                                    {{"UCX_TLS", "tcp"}, {"UCX_KEEPALIVE_INTERVAL", "20s"}}}),
    backendConfigName);
#else
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(TransportConformance);
#endif

}  // namespace weft::transport::testing
