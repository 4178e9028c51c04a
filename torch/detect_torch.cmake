# Included by cmake/WeftOptions.cmake (top-level scope: the find modules' variables and functions
# must stay visible to torch/CMakeLists.txt). Probes WEFT_TORCH_PYTHON for an importable
# torch 1.13 with torch.distributed, then Python3 (Development.Module), pybind11 and
# Torch's CMake config. Sets _found TRUE, or leaves it FALSE with the reason in _why; never
# fails. On success: WEFT_TORCH_VERSION, WEFT_TORCH_PYBIND11_DEFS (the pybind11 ABI torch
# was built with: a module built with another one fails at import) and WEFT_TORCH_PYTHON_LIB
# (libtorch_python.so, which TORCH_LIBRARIES lacks).
set(_hint "install python3-torch libtorch-dev pybind11-dev (scripts/setup-deps.sh)")
string(CONCAT _probe "import torch, torch.distributed as d, os\n"
           "print(torch.__version__, int(d.is_available()), torch._C._PYBIND11_COMPILER_TYPE,"
           " torch._C._PYBIND11_STDLIB, torch._C._PYBIND11_BUILD_ABI,"
           " os.path.dirname(torch.__file__))")
set(_rc 1)
set(_out "")
if(NOT WEFT_SANITIZE AND EXISTS "${WEFT_TORCH_PYTHON}")
  # Not from the source tree: its torch/ directory would pass for a namespace package.
  execute_process(COMMAND "${WEFT_TORCH_PYTHON}" -c "${_probe}" RESULT_VARIABLE _rc
                  WORKING_DIRECTORY "${CMAKE_BINARY_DIR}"
                  OUTPUT_VARIABLE _out ERROR_VARIABLE _err TIMEOUT 120
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
string(REPLACE " " ";" _tf "${_out}")
list(LENGTH _tf _tn)
if(WEFT_SANITIZE)
  # A sanitized module would need the sanitizer runtime preloaded into the interpreter.
  set(_why "not built with WEFT_SANITIZE=${WEFT_SANITIZE}")
elseif(NOT EXISTS "${WEFT_TORCH_PYTHON}")
  set(_why "WEFT_TORCH_PYTHON=${WEFT_TORCH_PYTHON} does not exist")
elseif(NOT _rc EQUAL 0 OR NOT _tn EQUAL 6)
  string(REGEX MATCH "[A-Za-z]*Error:[^\n]*" _last "${_err}")
  set(_why "${WEFT_TORCH_PYTHON} cannot import torch (${_last}): ${_hint}")
else()
  list(GET _tf 0 WEFT_TORCH_VERSION)
  list(GET _tf 1 _tdist)
  list(GET _tf 5 _tdir)
  list(GET _tf 2 _v2)
  list(GET _tf 3 _v3)
  list(GET _tf 4 _v4)
  set(WEFT_TORCH_PYBIND11_DEFS "PYBIND11_COMPILER_TYPE=\"${_v2}\"" "PYBIND11_STDLIB=\"${_v3}\""
      "PYBIND11_BUILD_ABI=\"${_v4}\"")
  if(NOT WEFT_TORCH_VERSION MATCHES "^1\\.13\\.")
    set(_why "torch ${WEFT_TORCH_VERSION} found; the plugin is written for the torch 1.13 c10d API")
  elseif(NOT _tdist EQUAL 1)
    set(_why "torch ${WEFT_TORCH_VERSION} was built without torch.distributed")
  else()
    set(Python3_EXECUTABLE "${WEFT_TORCH_PYTHON}")
    find_package(Python3 QUIET COMPONENTS Interpreter Development.Module)
    if(Python3_Development.Module_FOUND)
      find_package(pybind11 CONFIG QUIET)
    endif()
    if(pybind11_FOUND)
      find_package(Torch QUIET)
    endif()
    if(TORCH_FOUND)
      find_library(WEFT_TORCH_PYTHON_LIB torch_python HINTS ${TORCH_INSTALL_PREFIX}/lib "${_tdir}/lib")
    endif()
    if(NOT Python3_Development.Module_FOUND)
      set(_why "Python.h for ${WEFT_TORCH_PYTHON} not found: install python3-dev")
    elseif(NOT pybind11_FOUND)
      set(_why "pybind11's CMake config not found: ${_hint}")
    elseif(NOT TORCH_FOUND)
      set(_why "Torch's CMake config (libtorch-dev) not found: ${_hint}")
    elseif(NOT WEFT_TORCH_PYTHON_LIB)
      set(_why "libtorch_python.so not found: ${_hint}")
    else()
      set(_found TRUE)
    endif()
  endif()
endif()
