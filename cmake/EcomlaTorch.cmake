# Finds libtorch and defines ecomla::torch, the part of it ecomla links.
#
# Any libtorch works through CMAKE_PREFIX_PATH: the one scripts/setup.sh extracts from the PyPI
# wheel, a CUDA build, a distribution package.
#
# Without ECOMLA_WITH_CUDA we link only the CPU backend (torch_cpu + c10) and find it directly,
# not through TorchConfig.cmake: the wheel's libtorch is a CUDA build whose CMake config probes
# for GPUs and nvcc at configure time (and fails on CMake 3.25 for want of a CUDA20 dialect),
# and linking its CUDA libraries would make every binary load cuDNN, NCCL and friends for
# nothing. With ECOMLA_WITH_CUDA the full find_package(Torch) path is used.
if(ECOMLA_WITH_CUDA)
  find_package(Torch REQUIRED)
  add_library(ecomla_torch INTERFACE)
  target_link_libraries(ecomla_torch INTERFACE ${TORCH_LIBRARIES})
  target_compile_definitions(ecomla_torch INTERFACE ECOMLA_WITH_CUDA=1)
  set(_torch_cpu_library "${TORCH_LIBRARY}")
else()
  find_path(ECOMLA_TORCH_INCLUDE_DIR torch/csrc/api/include/torch/torch.h PATH_SUFFIXES include
            REQUIRED)
  find_library(ECOMLA_TORCH_CPU_LIBRARY torch_cpu REQUIRED)
  find_library(ECOMLA_C10_LIBRARY c10 REQUIRED)
  # libtorch's include folder also carries its own copies of third-party headers (fmt 12,
  # pybind11, oneDNN, ...), which would shadow the system's (Debian's fmt 9, whose library we
  # link). Expose only torch's own header trees, through links in the build folder.
  set(_torch_headers ${CMAKE_BINARY_DIR}/torch_include)
  file(MAKE_DIRECTORY ${_torch_headers})
  foreach(_dir ATen c10 torch caffe2)
    if(EXISTS ${ECOMLA_TORCH_INCLUDE_DIR}/${_dir})
      file(CREATE_LINK ${ECOMLA_TORCH_INCLUDE_DIR}/${_dir} ${_torch_headers}/${_dir} SYMBOLIC)
    endif()
  endforeach()
  add_library(ecomla_torch INTERFACE)
  target_include_directories(ecomla_torch SYSTEM INTERFACE
    ${_torch_headers} ${ECOMLA_TORCH_INCLUDE_DIR}/torch/csrc/api/include)
  target_link_libraries(ecomla_torch INTERFACE ${ECOMLA_TORCH_CPU_LIBRARY} ${ECOMLA_C10_LIBRARY})
  set(_torch_cpu_library "${ECOMLA_TORCH_CPU_LIBRARY}")
endif()
add_library(ecomla::torch ALIAS ecomla_torch)

# Binaries find libtorch (and, where setup fetched them, the CUDA runtime libraries that the
# wheel's libtorch_cpu.so links) through their RUNPATH.
get_filename_component(ECOMLA_TORCH_LIB_DIR "${_torch_cpu_library}" DIRECTORY)
set(CMAKE_BUILD_RPATH "${ECOMLA_TORCH_LIB_DIR};${CMAKE_SOURCE_DIR}/third_party/cuda-runtime/lib")
set(CMAKE_INSTALL_RPATH "${ECOMLA_TORCH_LIB_DIR}")
