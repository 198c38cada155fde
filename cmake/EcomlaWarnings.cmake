# Warnings for ecomla's own targets (PRIVATE, so consumers are not affected).
function(ecomla_warnings target)
  # GCC 12 reports false maybe-uninitialized warnings inside nlohmann::json iterators (libtorch
  # builds with this switch too).
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-unused-parameter
                         -Wno-maybe-uninitialized)
  if(ECOMLA_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
