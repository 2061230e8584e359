# Project-wide warning flags, applied to pagoda's own targets through pagoda_warnings.
add_library(pagoda_warnings INTERFACE)
target_compile_options(pagoda_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align -Wunused
  -Woverloaded-virtual -Wimplicit-fallthrough
  $<$<BOOL:${PAGODA_WERROR}>:-Werror>)
option(PAGODA_WERROR "Treat warnings as errors" OFF)
