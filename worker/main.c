/* usbforged: the kiosk's worker daemon (see worker/daemon.h). */
#include <getopt.h>
#include <locale.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"
#include "util/log.h"
#include "util/macro.h"
#include "worker/daemon.h"

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "once", no_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },	    { "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },	    {},
	};
	const char *config_path = NULL;
	bool once = false;
	int o;

	setlocale(LC_ALL, "");
	/* I/O buffers (MiBs each) come from mmap and go back to the system when freed, instead of
	 * lingering in per-thread malloc arenas: keeps a busy kiosk's RSS to what is in use. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	while ((o = getopt_long(argc, argv, "c:ovhV", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			config_path = optarg;
			break;
		case 'o':
			once = true;
			break;
		case 'v':
			log_set_max_level(LOG_LVL_DEBUG);
			break;
		case 'h':
			printf("usage: usbforged [--config FILE] [--once] [--verbose]\n");
			return 0;
		case 'V':
			printf("usbforged %s\n", UF_VERSION);
			return 0;
		default:
			fprintf(stderr, "usage: usbforged [--config FILE] [--once] [--verbose]\n");
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr,
			"usbforged: unexpected argument '%s'\nusage: usbforged [--config FILE] [--once] [--verbose]\n",
			argv[optind]);
		return 2;
	}
	struct uf_config cfg;
	_cleanup_free_ char *err = NULL;
	if (config_load_default(config_path, &cfg, &err) < 0) {
		log_error("CONFIG_INVALID: %s", err ? err : "cannot load the configuration");
		return 2;
	}
	int r = daemon_run(&cfg, config_path, once);
	config_done(&cfg);
	return r < 0 ? 1 : 0;
}
