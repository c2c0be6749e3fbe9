{
  "targets": [
    {
      "target_name": "sed_blas",
      "sources": ["src/sed_blas.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O3", "-fno-math-errno", "-fno-trapping-math", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "include_dirs": ["<!@(pkg-config --cflags-only-I openblas | sed -e 's/-I//g')"],
      "libraries": ["<!@(pkg-config --libs openblas)"],
      "ldflags": ["-Wl,-rpath,<!@(pkg-config --variable=libdir openblas)"]
    }
  ]
}
