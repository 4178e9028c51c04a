// The UCX backend's internals that decide the error mode of same-host endpoints: the
// parsers of UCX's printed resource and lane tables, the address record, and the choice.
#ifdef WEFT_HAVE_UCX
#include <gtest/gtest.h>

#include "transport/ucx/ucx_internal.h"

namespace weft::transport::ucx {
namespace {

using Names = std::vector<std::string>;

// ucp_context_print_info of UCX 1.13.1 with UCX_TLS unset on a host without RDMA devices.
constexpr const char* kContextInfo =
    "#\n"
    "# UCP context\n"
    "#\n"
    "#     component 0  :  self\n"
    "#     component 1  :  tcp\n"
    "#\n"
    "#            md 0  :  component 0  self \n"
    "#            md 1  :  component 1  tcp \n"
    "#\n"
    "#      resource 0  :  md 0  dev 0  flags -- self/memory\n"
    "#      resource 1  :  md 1  dev 1  flags -- tcp/lo\n"
    "#      resource 2  :  md 1  dev 2  flags -s tcp/eth0\n"
    "#      resource 3  :  md 2  dev 3  flags -- sysv/memory\n"
    "#      resource 4  :  md 3  dev 3  flags -- posix/memory\n"
    "#      resource 5  :  md 4  dev 4  flags -- cma/memory\n"
    "#\n";

// ucp_ep_print_info lines (format of ucp_ep_config_lane_info_str), with a cm lane.
constexpr const char* kEndpointInfo =
    "#\n"
    "# UCP endpoint\n"
    "#               peer: <no debug data>\n"
    "#                 lane[0]:  3:sysv/memory.0 md[2]           -> addr[3].md[2]/sysv/sysdev[255] "
    "amo#0 am am_bw#0\n"
    "#                 lane[1]:  4:posix/memory.0 md[3]          -> addr[4].md[3]/posix/sysdev[255] "
    "amo#1\n"
    "#                 lane[2]: 12:tcp/eth0.0 md[1]              -> addr[2].md[1]/tcp/sysdev[255] "
    "rma_bw#1\n"
    "#                 lane[3]: cm tcp/eth0\n"
    "#\n";

TEST(UcxInternal, ParsesTheTransportsOfUcxPrintedTables) {
  EXPECT_EQ(parseResourceTransports(kContextInfo),
            (Names{"self", "tcp", "tcp", "sysv", "posix", "cma"}));
  EXPECT_EQ(parseLaneTransports(kEndpointInfo), (Names{"sysv", "posix", "tcp"}));
  // Text of another format gives nothing (callers then assume nothing).
  EXPECT_TRUE(parseResourceTransports("no tables here\n").empty());
  EXPECT_TRUE(parseLaneTransports("lane[0]: garbage\nlane[x\n").empty());
  EXPECT_TRUE(isSharedMemoryTransport("cma"));
  EXPECT_FALSE(isSharedMemoryTransport("tcp"));
}

TEST(UcxInternal, AddressRecordCarriesIdentityFlagsAndWorkerAddress) {
  ProcessIdentity id;
  id.host = "boot/pidns";
  id.pid = 4242;
  id.start_time = 123456789;
  const std::string worker("\x01\x02\x00\x03", 4);
  const std::string packed = packAddress(id, kAddressSameHostNoUcxErrors, worker);
  Result<AddressRecord> r = unpackAddress(packed);
  ASSERT_TRUE(r.isOk()) << r.status();
  EXPECT_EQ(r->id.host, id.host);
  EXPECT_EQ(r->id.pid, id.pid);
  EXPECT_EQ(r->id.start_time, id.start_time);
  EXPECT_EQ(r->flags, kAddressSameHostNoUcxErrors);
  EXPECT_EQ(r->worker_address, worker);
  // Truncated records are refused with the size.
  Result<AddressRecord> bad = unpackAddress(std::string_view(packed).substr(0, 10));
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find("malformed UCX address record (10 bytes)"),
            std::string::npos)
      << bad.status();
}

}  // namespace
}  // namespace weft::transport::ucx
#endif  // WEFT_HAVE_UCX
