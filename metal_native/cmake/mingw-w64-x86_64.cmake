# Cross-compile metal_native for 64-bit Windows with MinGW-w64 (Debian/Ubuntu:
# apt-get install mingw-w64):
#   cmake -S metal_native -B build-win -DCMAKE_TOOLCHAIN_FILE=metal_native/cmake/mingw-w64-x86_64.cmake
#   cmake --build build-win
# The tests (build-win/tests/*.exe) run under Wine (wine64) as well as on Windows.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc)
set(CMAKE_RC_COMPILER x86_64-w64-mingw32-windres)
set(CMAKE_FIND_ROOT_PATH /usr/x86_64-w64-mingw32)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
