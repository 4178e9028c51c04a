// ClientImpl::checkpointJob: a checkpoint (or restore) as a collective of the workers, so
// that the servers' snapshots are one consistent cut of the whole job (client.h).
//
// Store keys, below <ns>/jobckpt/<seq>/ (seq: this worker's count of calls, the same on
// every worker as each calls once per job checkpoint):
//   arrive/<w>  "ok <restore 0|1> <path>" when worker w is in, with no request in flight,
//               or "refused <reason>"
//   outcome     "<status code number>\n<message>", written by worker 0 after every worker
//               arrived (or the wait for them ran out)
// Worker 0 removes the keys of call seq - 1: every worker read that outcome before it
// arrived at this one.
#include <charconv>
#include <string>
#include <vector>

#include "paramserver/net/client_impl.h"

namespace weft::ps::net {
namespace {

std::string encodeOutcome(const Status& st) {
  return strCat(static_cast<int>(st.code()), "\n", st.message());
}

Status decodeOutcome(const std::string& value, const std::string& what) {
  const size_t nl = value.find('\n');
  int code = -1;
  if (nl != std::string::npos) {
    const auto [end, ec] = std::from_chars(value.data(), value.data() + nl, code);
    if (ec != std::errc() || end != value.data() + nl) code = -1;
  }
  if (code < 0 || code > static_cast<int>(StatusCode::kInternal)) {
    return WEFT_ERROR(StatusCode::kInternal, what, ": the outcome in the store is malformed: '",
                      value.substr(0, 80), "'");
  }
  if (code == 0) return Status::ok();
  return Status(static_cast<StatusCode>(code), value.substr(nl + 1));
}

// Waiting for the other workers ends this much before the caller's deadline, so that the
// outcome (a timeout naming the missing workers) still reaches those that came.
Deadline arrivalDeadline(Deadline deadline) {
  if (deadline.isNever()) return deadline;
  return Deadline::after(deadline.remaining() * 9 / 10);
}

}  // namespace

Status ClientImpl::checkpointJob(const std::string& path, bool restore, uint32_t num_workers,
                                 Deadline deadline) {
  const uint32_t me = options_.worker;
  const uint64_t seq = job_checkpoints_++;
  const std::string kind = restore ? "restore" : "checkpoint";
  const std::string what = strCat("job ", kind, " ", seq, " of '", path, "'");
  if (num_workers == 0 || me >= num_workers) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, what, ": this client is worker ", me,
                      ", not below num_workers ", num_workers)
        .withHint("give each worker its index 0..num_workers-1 in ClientOptions::worker");
  }
  Store& store = members_.store();
  const std::string base = strCat(members_.ns(), "/jobckpt/", seq, "/");
  const std::string ready = strCat("ok ", restore ? 1 : 0, " ", path);
  const std::string arrival =
      ops_.empty() ? ready
                   : strCat("refused it has ", ops_.size(),
                            " request(s) of its own in flight (wait for them first)");
  WEFT_RETURN_IF_ERROR(store.set(strCat(base, "arrive/", me), arrival).withContext(what));

  if (me != 0) {
    Result<std::string> out = store.get(base + "outcome", deadline);
    if (out.status().code() == StatusCode::kTimeout) {
      return WEFT_ERROR(StatusCode::kTimeout, what, " (worker ", me,
                        "): worker 0 published no outcome by the deadline")
          .withHint("every worker must call checkpointJob as often as the others; worker 0 "
                    "waits for all of them, so one is missing, dead or slower than the deadline");
    }
    if (!out.isOk()) return out.status().withContext(what);
    return decodeOutcome(*out, what);
  }

  // Worker 0: every worker in, the same request, none with requests in flight.
  std::vector<std::string> keys;
  for (uint32_t w = 0; w < num_workers; ++w) keys.push_back(strCat(base, "arrive/", w));
  Status outcome;
  Status arrived = store.wait(keys, arrivalDeadline(deadline));
  if (arrived.code() == StatusCode::kTimeout) {
    std::string missing;
    for (uint32_t w = 0; w < num_workers; ++w) {
      Result<bool> there = store.check(keys[w]);
      if (there.isOk() && !*there) missing += strCat(missing.empty() ? "" : ", ", w);
    }
    outcome = WEFT_ERROR(StatusCode::kTimeout, what, ": worker(s) ", missing,
                         " did not call checkpointJob in time; nothing was ",
                         restore ? "restored" : "written")
                  .withHint("every worker must call checkpointJob as often as the others");
  } else if (!arrived.isOk()) {
    return arrived.withContext(what);  // the store itself failed: no one can be told
  } else {
    std::string problems;
    for (uint32_t w = 0; w < num_workers; ++w) {
      Result<std::string> a = store.get(keys[w], deadline);
      if (!a.isOk()) return a.status().withContext(what);
      if (*a == ready) continue;
      std::string problem;
      if (a->starts_with("refused ")) {
        problem = strCat("worker ", w, ": ", a->substr(8));
      } else if (a->size() >= 4 && a->starts_with("ok ")) {
        problem = strCat("worker ", w, " asked for a ", (*a)[3] == '1' ? "restore" : "checkpoint",
                         " of '", a->substr(5), "', worker 0 for a ", kind, " of '", path, "'");
      } else {
        problem = strCat("worker ", w, " left a malformed arrival '", a->substr(0, 80), "'");
      }
      problems += strCat(problems.empty() ? "" : "; ", problem);
    }
    if (!problems.empty()) {
      outcome = WEFT_ERROR(StatusCode::kInvalidArgument, what, ": ", problems, "; nothing was ",
                           restore ? "restored" : "written");
    } else {
      outcome = checkpoint(path, restore, deadline);
      if (!outcome.isOk()) outcome = outcome.withContext(what);
    }
  }
  WEFT_RETURN_IF_ERROR(store.set(base + "outcome", encodeOutcome(outcome)).withContext(what));
  if (seq > 0) {  // best effort: stale keys only cost store memory
    const std::string old = strCat(members_.ns(), "/jobckpt/", seq - 1, "/");
    for (uint32_t w = 0; w < num_workers; ++w) (void)store.erase(strCat(old, "arrive/", w));
    (void)store.erase(old + "outcome");
  }
  return outcome;
}

}  // namespace weft::ps::net
