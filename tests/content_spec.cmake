# The order content_spec parser (stages/content_spec.c; no database).
uf_test(NAME test_content_spec SOURCES test_content_spec.c LIBS uf_stages)
