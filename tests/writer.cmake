# Suites of the writing path: block sources (image/), the writer, verifier and probe (blkio/),
# and the stage wrappers that drive them (stages/stage_write.c).
uf_test(NAME test_blksrc SOURCES test_blksrc.c LIBS uf_blkio)
uf_test(NAME test_writer SOURCES test_writer.c helpers/stalldev.c LIBS uf_stages)
uf_test(NAME test_probe SOURCES test_probe.c LIBS uf_stages)
uf_test(NAME test_verify SOURCES test_verify.c LIBS uf_stages)
# Mirror suites of the block I/O engine and the pipeline (no database).
uf_test(NAME test_chunkmap SOURCES test_chunkmap.c LIBS uf_blkio)
uf_test(NAME test_ioq SOURCES test_ioq.c helpers/stalldev.c LIBS uf_blkio)
uf_test(NAME test_pipeline SOURCES test_pipeline.c LIBS uf_stages)
