// Intentionally small: test_env.h is header-only; this file anchors the support library.
#include "tests/support/test_env.h"
