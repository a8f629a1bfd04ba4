/* A board with a slot in each of the eight states, served by the daemon's HTTP server (no
 * database, no usbforged) for tests/page/states.py: the page must name every state in words,
 * and show texts from the database (order numbers, reasons) as text, never as HTML.
 *   page_states DIR    writes DIR/page_states.conf, prints the port, serves until stdin closes */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config/config.h"
#include "http/board.h"
#include "http/server.h"
#include "util/message.h"

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: page_states DIR\n");
		return 2;
	}
	struct board *b = board_new("kiosk-7", "kiosk-7/test/1", 8);
	board_db(b, true);
	board_slot(b, "1", TILE_EMPTY, NULL, NULL, 0);
	board_slot(b, "2", TILE_READY, NULL, "SER-2", 1ull << 30);
	board_job_start(b, "3", 11, "A-1001", 0, 1);
	board_job_start(b, "4", 12, "A-1001", 1, 1);
	board_job_stage(b, "4", TILE_WRITING);
	board_job_progress(b, "4", 100, 1000);
	board_job_start(b, "5", 13, "<b>X</b>&amp;", 2, 1);
	board_job_stage(b, "5", TILE_VERIFYING);
	board_job_progress(b, "5", 700, 1000);
	board_job_start(b, "6", 14, "B-2", 0, 1);
	board_slot(b, "6", TILE_DONE, NULL, NULL, 0);
	board_slot(b, "7", TILE_BAD, "fake capacity: only 2 GB of 16 GB usable", NULL, 0);
	board_slot(b, "8", TILE_UNSAFE, "mounted at <img src=x onerror=alert(1)>", NULL, 0);

	char *conf = str_printf("%s/page_states.conf", argv[1]);
	FILE *f = conf ? fopen(conf, "we") : NULL;
	if (!f || fputs("http = { listen = \"127.0.0.1:0\"; };\n", f) < 0 || fclose(f) != 0) {
		fprintf(stderr, "page_states: cannot write %s\n", conf ? conf : argv[1]);
		return 2;
	}
	struct uf_config cfg;
	char *err = NULL;
	struct http_server *srv = NULL;
	if (config_load(conf, &cfg, &err) < 0 || http_start(&cfg, b, &srv) < 0) {
		fprintf(stderr, "page_states: %s\n", err ? err : "http_start failed");
		return 2;
	}
	printf("%u\n", http_port(srv));
	fflush(stdout);
	char buf[64];
	while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
		;
	http_stop(srv);
	config_done(&cfg);
	board_free(b);
	free(conf);
	free(err);
	return 0;
}
