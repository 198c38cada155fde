// Error types shared by the whole library.
//
// Untrusted input (model files, JSON, YAML, text data) raises FormatError; the message names the
// file, the offset or key, and what was expected. Bad arguments raise std::invalid_argument.
#pragma once

#include <stdexcept>
#include <string>

namespace ecomla {

class FormatError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

}  // namespace ecomla
