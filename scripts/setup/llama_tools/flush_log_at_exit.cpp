// Linked into the llama.cpp tools that scripts/setup/build_llama_tools.sh builds. llama.cpp's logger
// writes from a worker thread and is deliberately never destroyed (common/log.cpp, llama.cpp
// issue 22142), so a tool's last lines can be lost when it exits under load: llama-imatrix's
// "Final estimate: PPL" went missing once in a test run. Flushing from a static destructor,
// which runs after main returns, keeps them.
#include "log.h"

namespace {
struct FlushLogAtExit {
    ~FlushLogAtExit() { common_log_pause(common_log_main()); }  // drains the queue, then stops
} flush_log_at_exit;
}
