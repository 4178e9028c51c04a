#include "collectives/api/request.h"

#include "collectives/comm/comm_core.h"

namespace weft::coll {

Request::~Request() {
  release();
}

Request::Request(Request&& other) noexcept
    : core_(std::move(other.core_)), op_(other.op_), generation_(other.generation_) {
  other.op_ = nullptr;
}

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    release();
    core_ = std::move(other.core_);
    op_ = other.op_;
    generation_ = other.generation_;
    other.op_ = nullptr;
  }
  return *this;
}

bool Request::current() const {
  return op_ != nullptr && op_->in_use && op_->generation == generation_;
}

void Request::release() {
  if (op_ == nullptr) return;
  if (current()) {
    detail::CommCore* core = core_.get();
    core->dropHandle(op_, std::move(core_));
  }
  op_ = nullptr;
  core_.reset();
}

bool Request::done() const {
  return current() && !op_->running;
}

bool Request::test() {
  if (!current()) return false;
  if (op_->running) core_->engine().progressAll();
  if (op_->running) core_->engine().maybePollFailures(*op_);
  return !op_->running;
}

Status Request::wait() {
  return wait(Deadline::never());
}

Status Request::wait(Deadline deadline) {
  if (!current()) return WEFT_ERROR(StatusCode::kInvalidArgument, "wait on an empty request");
  if (op_->running) core_->engine().waitFor(*op_, deadline.min(op_->deadline));
  if (op_->running) {
    return WEFT_ERROR(StatusCode::kTimeout, core_->describe(*op_),
                      ": the wait's deadline passed; the operation is still in progress");
  }
  return op_->status;
}

Status Request::status() const {
  if (!current()) return WEFT_ERROR(StatusCode::kInvalidArgument, "status of an empty request");
  if (op_->running) {
    return WEFT_ERROR(StatusCode::kUnavailable, core_->describe(*op_), ": still in progress");
  }
  return op_->status;
}

uint64_t Request::seq() const {
  return current() ? op_->seq : 0;
}

std::string_view Request::operation() const {
  return current() ? std::string_view(detail::opName(op_->op)) : std::string_view();
}

std::string_view Request::algorithm() const {
  return current() ? op_->algorithm : std::string_view();
}

}  // namespace weft::coll
