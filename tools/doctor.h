// weft-info --doctor: checks what a Weft job on this host depends on and says what to fix.
//
// Each check prints one line "[ ok ]", "[info]", "[warn]" or "[FAIL]" with what it found,
// and for warnings and failures the usual cause or the fix. Checks: WEFT_* variables, the
// locked-memory limit (RDMA registration), /dev/shm (shared-memory collectives and UCX's
// posix transport), CPUs, ptrace scope (UCX's cma), the clock source, transparent huge
// pages, the store address (WEFT_STORE_ADDR reachable), each transport end to end (two
// Contexts of this process exchange a message through an in-process store: UCX, and verbs
// on every active port), and the GPU probe.
//
// Threads: runs on the caller's thread (the transport check starts one helper thread per
// backend and joins it). Nothing is left behind.
#pragma once

#include <string>
#include <vector>

namespace weft::tools {

enum class Verdict { kOk, kInfo, kWarn, kFail };

struct Finding {
  Verdict verdict = Verdict::kOk;
  std::string check;  // "locked memory", "/dev/shm", "transport ucx", ...
  std::string text;   // what was found, and the fix for kWarn / kFail
};

// Runs every check (transports with a deadline of `timeout_s` each).
std::vector<Finding> runDoctor(double timeout_s);
// "[ ok ] check: text" lines.
std::string formatFindings(const std::vector<Finding>& findings);
// 1 when a finding is kFail, else 0.
int doctorExitCode(const std::vector<Finding>& findings);

}  // namespace weft::tools
