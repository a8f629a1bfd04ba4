# Suites of the writing path (stages/ block sources, writer, verifier, probe).
# stage_fail()/stage_ctx_done() live in stages/pipeline.c; until uf_stages lists it, the suites
# that drive the stage wrappers compile it themselves.
get_target_property(_uf_stage_srcs uf_stages SOURCES)
set(_uf_pipeline "")
if(NOT "pipeline.c" IN_LIST _uf_stage_srcs)
  set(_uf_pipeline ${CMAKE_SOURCE_DIR}/stages/pipeline.c)
endif()
uf_test(NAME test_blksrc SOURCES test_blksrc.c LIBS uf_stages)
uf_test(NAME test_writer SOURCES test_writer.c ${_uf_pipeline} LIBS uf_stages)
uf_test(NAME test_probe SOURCES test_probe.c ${_uf_pipeline} LIBS uf_stages)
uf_test(NAME test_verify SOURCES test_verify.c ${_uf_pipeline} LIBS uf_stages)
