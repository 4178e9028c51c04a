// Python module weft_torch: importing it registers the "weft" backend with
// torch.distributed, so that init_process_group(backend="weft") creates a ProcessGroupWeft.
#include <pybind11/chrono.h>
#include <pybind11/pybind11.h>
#include <torch/csrc/utils/pybind.h>

#include "torch/process_group_weft.h"

namespace py = pybind11;

namespace {

// The creator torch 1.13 calls: (prefix store, rank, world size, timeout). Bootstrapping
// blocks on the other ranks, so it runs without the GIL.
c10::intrusive_ptr<weft::torchpg::ProcessGroupWeft> createProcessGroup(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
    std::chrono::milliseconds timeout) {
  return c10::make_intrusive<weft::torchpg::ProcessGroupWeft>(store, rank, size, timeout);
}

}  // namespace

PYBIND11_MODULE(weft_torch, m) {
  m.doc() = "Weft process-group backend for torch.distributed (CPU tensors)";
  // The base class must be registered with pybind11 before a class derived from it.
  py::module_ dist = py::module_::import("torch.distributed");
  py::class_<weft::torchpg::ProcessGroupWeft, c10::intrusive_ptr<weft::torchpg::ProcessGroupWeft>,
             c10d::ProcessGroup>(m, "ProcessGroupWeft");
  m.def("create_process_group", &createProcessGroup, py::arg("store"), py::arg("rank"),
        py::arg("world_size"), py::arg("timeout"), py::call_guard<py::gil_scoped_release>(),
        "Creates a ProcessGroupWeft (collective over the group); the backend creator.");
  m.attr("BACKEND_NAME") = "weft";
  py::object backend = dist.attr("Backend");
  if (!py::hasattr(backend, "WEFT")) {
    backend.attr("register_backend")("weft", m.attr("create_process_group"));
  }
}
