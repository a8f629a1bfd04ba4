# Turns a file into a C array at build time (no xxd needed):
#   cmake -DIN=page.html -DOUT=page_html.c -DNAME=page_html -P embed.cmake
# writes `const unsigned char NAME[] = { …, 0 };` (NUL-terminated, so it is also a C string) and
# `const size_t NAME_len` (the file's length, without the NUL).
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n\t" body "${body}")
file(WRITE "${OUT}.tmp"
  "/* Generated from ${IN} by http/embed.cmake; do not edit. */\n"
  "#include <stddef.h>\n"
  "extern const unsigned char ${NAME}[];\n"
  "extern const size_t ${NAME}_len;\n"
  "const unsigned char ${NAME}[] = {\n\t${body}0x00\n};\n"
  "const size_t ${NAME}_len = ${len};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
