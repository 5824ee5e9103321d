// Forced into llama-server's sources (-include) by scripts/setup/build_llama_tools.sh, which
// builds llama-cpp-python 0.3.36's llama-server against the newer llama.cpp that strata links.
// The one helper of the older common library that the server calls and the newer one dropped,
// as the older one defined it off Windows.
#pragma once
#include <fstream>
#include <string>

inline std::ifstream fs_open_ifstream(const std::string & fname, std::ios_base::openmode mode) {
    return std::ifstream(fname, mode);
}
