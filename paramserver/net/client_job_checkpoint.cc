// ClientImpl::checkpointJob: a checkpoint (or restore) as a collective of the workers, so
// that the servers' snapshots are one consistent cut of the whole job (client.h).
//
// Store keys, below <ns>/jobckpt/<seq>/ (seq: this Client's count of calls, the same on
// every worker as each calls once per job checkpoint):
//   arrive/<w>  "ok <restore 0|1> <path>" when worker w is in with no request unanswered,
//               or "refused <reason>"
//   state       claimed once by compare-and-set: "running" by worker 0 just before it
//               writes, or "abandoned by worker <w>" by a worker whose deadline passed
//               first; so worker 0 never writes a snapshot while a worker that gave up
//               may already be sending again
//   outcome     "<status code number>\n<message>", written by worker 0
//   read        counter: workers done with the call; the one that brings it to
//               num_workers erases the call's keys
// Keys of a job that died inside a call stay behind: a new job must use a fresh store or
// namespace (as weft-run's per-job store gives).
#include <charconv>
#include <string>
#include <vector>

#include "common/logging.h"
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

// Worker 0 stops waiting for the others this much before its deadline, so that the
// outcome (a timeout naming the missing workers) still reaches those that came.
Deadline arrivalDeadline(Deadline deadline) {
  if (deadline.isNever()) return deadline;
  const std::chrono::nanoseconds left = deadline.remaining();
  return Deadline::after(left - left / 10);
}

constexpr std::string_view kRunning = "running";

}  // namespace

// Requests whose reply has not come (or whose send has not completed), tickets the caller
// holds and requests it can no longer wait for (orphans) alike: any of them may still
// change a server after the snapshot.
size_t ClientImpl::unansweredRequests() {
  ctx_->progress();
  size_t n = 0;
  for (const auto& [ticket, op] : ops_) n += settled(op) ? 0 : 1;
  for (const Op& op : orphans_) n += settled(op) ? 0 : 1;
  return n;
}

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
  std::vector<std::string> arrive;
  for (uint32_t w = 0; w < num_workers; ++w) arrive.push_back(strCat(base, "arrive/", w));
  // Names the workers that have not arrived ("" when all have, or the store failed).
  auto missingWorkers = [&] {
    std::string missing;
    for (uint32_t w = 0; w < num_workers; ++w) {
      Result<bool> there = store.check(arrive[w]);
      if (there.isOk() && !*there) missing += strCat(missing.empty() ? "" : ", ", w);
    }
    return missing;
  };
  // This worker is done with the call; the last one removes its keys.
  auto leave = [&] {
    Result<int64_t> n = store.add(base + "read", 1);
    if (!n.isOk() || *n < static_cast<int64_t>(num_workers)) return;
    for (const std::string& k : arrive) (void)store.erase(k);
    for (const char* k : {"state", "outcome", "read"}) (void)store.erase(base + k);
  };

  const std::string ready = strCat("ok ", restore ? 1 : 0, " ", path);
  const size_t busy = unansweredRequests();
  const std::string arrival =
      busy == 0 ? ready
                : strCat("refused it has ", busy, " request(s) of its own not answered yet "
                                                  "(wait for them first)");
  WEFT_RETURN_IF_ERROR(store.set(arrive[me], arrival).withContext(what));

  if (me != 0) {
    Result<std::string> out = store.get(base + "outcome", deadline);
    if (out.isOk()) {
      leave();
      return keepClocks(decodeOutcome(*out, what), path, restore);
    }
    if (out.status().code() != StatusCode::kTimeout) return out.status().withContext(what);
    // Out of time: make sure worker 0 will not start writing now.
    Result<std::string> claimed =
        store.compareSet(base + "state", "", strCat("abandoned by worker ", me));
    leave();
    if (claimed.isOk() && *claimed == kRunning) {
      return WEFT_ERROR(StatusCode::kTimeout, what, " (worker ", me, "): worker 0 is writing "
                        "the snapshot but did not finish by this worker's deadline; it is one "
                        "cut only if this worker sends nothing until it ends")
          .withHint("give checkpointJob a deadline longer than a checkpoint of every server");
    }
    const std::string missing = missingWorkers();
    return WEFT_ERROR(StatusCode::kTimeout, what, " (worker ", me, "): ",
                      missing.empty() ? std::string("worker 0 did not begin in time")
                                      : strCat("worker(s) ", missing,
                                               " did not call checkpointJob in time"),
                      "; nothing was ", restore ? "restored" : "written")
        .withHint("every worker must call checkpointJob as often as the others");
  }

  // Worker 0: every worker in, the same request, none with requests unanswered.
  Status outcome;
  Status arrived = store.wait(arrive, arrivalDeadline(deadline));
  const std::string missing = arrived.code() == StatusCode::kTimeout ? missingWorkers() : "";
  if (!missing.empty()) {
    outcome = WEFT_ERROR(StatusCode::kTimeout, what, ": worker(s) ", missing,
                         " did not call checkpointJob in time; nothing was ",
                         restore ? "restored" : "written")
                  .withHint("every worker must call checkpointJob as often as the others");
  } else if (!arrived.isOk() && arrived.code() != StatusCode::kTimeout) {
    return arrived.withContext(what);  // the store itself failed: no one can be told
  } else {
    std::string problems;
    for (uint32_t w = 0; w < num_workers; ++w) {
      Result<std::string> a = store.get(arrive[w], deadline);
      if (!a.isOk()) return a.status().withContext(what);
      if (*a == ready) continue;
      std::string problem;
      if (a->starts_with("refused ")) {
        problem = strCat("worker ", w, ": ", a->substr(8));
      } else if (a->size() >= 5 && a->starts_with("ok ")) {
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
      Result<std::string> claimed = store.compareSet(base + "state", "", kRunning);
      if (!claimed.isOk()) return claimed.status().withContext(what);
      if (*claimed != kRunning) {
        outcome = WEFT_ERROR(StatusCode::kTimeout, what, ": the call was ", *claimed,
                             " (its deadline passed while waiting for the others), so nothing "
                             "was ", restore ? "restored" : "written")
                      .withHint("give every worker the same, long enough deadline");
      } else {
        outcome = checkpointCut(path, restore, deadline);
        if (!outcome.isOk()) outcome = outcome.withContext(what);
      }
    }
  }
  WEFT_RETURN_IF_ERROR(store.set(base + "outcome", encodeOutcome(outcome)).withContext(what));
  leave();
  return keepClocks(outcome, path, restore);
}

// The servers' worker clocks (BSP / SSP) are part of the snapshot. At the cut they equal
// this worker's own (its Clock requests were answered), so a written checkpoint remembers
// them and a restore of it by this Client puts them back: pulls then carry the clock the
// servers expect instead of waiting for reports that will not come.
Status ClientImpl::keepClocks(Status outcome, const std::string& path, bool restore) {
  // A restore (even a failed one) may have replaced tables and their slabs: cached slab
  // keys and mappings would read the old rows.
  if (restore) forgetAllSlabKeys();
  if (!outcome.isOk()) return outcome;
  if (!restore) {
    job_clocks_[path] = clocks_;
  } else if (auto it = job_clocks_.find(path); it != job_clocks_.end()) {
    clocks_ = it->second;
  } else if (!clocks_.empty()) {
    WEFT_LOG(kWarn, "ps") << "ps client rank " << options_.rank << ": restored job checkpoint '"
                          << path << "', which this client did not write: its table clocks "
                          << "stay as they were (BSP / SSP pulls may wait)";
  }
  return outcome;
}

// Worker 0's part once every worker is in: the current shard map, fully served (a server
// that is joining gets rows handed over by the others, server to server, which no worker
// waits for), then the checkpoint of every server.
Status ClientImpl::checkpointCut(const std::string& path, bool restore, Deadline deadline) {
  WEFT_RETURN_IF_ERROR(refreshMap(deadline));
  if (map_->version() > 1) WEFT_RETURN_IF_ERROR(members_.waitServed(map_->version(), deadline));
  return checkpoint(path, restore, deadline);
}

}  // namespace weft::ps::net
