# The fuzz targets, by name (the binary is fuzz_<name>, its seeds fuzz/corpus/<name>/, its
# regression inputs fuzz/regress/<name>/). Read by fuzz/CMakeLists.txt and tests/fuzz.cmake.
set(UF_FUZZ_TARGETS config size content_spec bmap_xml fatname blksrc_gzip blksrc_xz blksrc_zstd blksrc_bmap
    resume_state)
