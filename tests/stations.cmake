# Many stations on one database (issue 15, part 5): ten real usbforged of ten stations on the
# real MariaDB.
uf_test(NAME test_stations SOURCES test_stations.c LIBS uf_db DB TIMEOUT 400 LABELS stations)
add_dependencies(test_stations usbforged usbforge)
