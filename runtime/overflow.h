// Stack overflow reports (overflow.cc).
#pragma once

namespace gort::rt {

// Once per process, at the first gort::run: the SIGSEGV handler.
void overflow_install();
// On every M's thread: an alternate signal stack, unless it has one.
void overflow_altstack();

}  // namespace gort::rt
