# Warning flags shared by every Weft target (see STYLE.md: -Wimplicit-fallthrough, errors in CI).
add_library(weft_warnings INTERFACE)
target_compile_options(weft_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wimplicit-fallthrough
  -Wcast-align -Wformat=2 -Wundef)
if(WEFT_WERROR)
  target_compile_options(weft_warnings INTERFACE -Werror)
endif()
