// ucs_status_t -> weft::Status.
#include "transport/ucx/ucx_internal.h"

namespace weft::transport::ucx {

StatusCode ucxCode(ucs_status_t status) {
  switch (status) {
    case UCS_OK: return StatusCode::kOk;
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_NO_RESOURCE:
    case UCS_ERR_EXCEEDS_LIMIT:
    case UCS_ERR_BUSY: return StatusCode::kNoResource;
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
    case UCS_ERR_MESSAGE_TRUNCATED:
    case UCS_ERR_BUFFER_TOO_SMALL:
    case UCS_ERR_OUT_OF_RANGE:
    case UCS_ERR_NO_ELEM: return StatusCode::kInvalidArgument;
    case UCS_ERR_UNSUPPORTED: return StatusCode::kNotSupported;
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_NO_DEVICE:
    case UCS_ERR_REJECTED:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_ALREADY_EXISTS: return StatusCode::kUnavailable;
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_CONNECTION_RESET: return StatusCode::kPeerFailure;
    case UCS_ERR_TIMED_OUT: return StatusCode::kTimeout;
    case UCS_ERR_CANCELED: return StatusCode::kCanceled;
    default:
      if (UCS_IS_LINK_ERROR(status) || UCS_IS_ENDPOINT_ERROR(status)) {
        return StatusCode::kPeerFailure;
      }
      return StatusCode::kIoError;
  }
}

bool isPeerError(ucs_status_t status) {
  switch (status) {
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_REJECTED:
    case UCS_ERR_IO_ERROR: return true;
    default: return UCS_IS_LINK_ERROR(status) || UCS_IS_ENDPOINT_ERROR(status);
  }
}

Status ucxError(ucs_status_t status, std::string_view what, std::source_location where) {
  return Status(
      ucxCode(status),
      strCat(what, ": ", ucs_status_string(status), " (ucs status ", static_cast<int>(status), ")"),
      where);
}

}  // namespace weft::transport::ucx
