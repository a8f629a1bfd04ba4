/* uf_log_probe: messages through util/log.h whose fields test_journal checks in the journal:
 * hostile field values (a newline and "FIELD=" inside, overlong, multi-byte at the cut), an
 * overlong message, and a thread context that other threads do not see. With --say-target it
 * prints on stdout whether it took stderr for the journal. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "util/log.h"
#include "util/logid.h"

static void *other_thread(void *p)
{
	(void)p;
	log_notice("probe: another thread, no context");
	return NULL;
}

int main(int argc, char **argv)
{
	/* a value made to look like more fields */
	log_struct(LOG_LVL_WARNING,
		   LOG_FIELDS(.message_id = LOG_MID_JOB_FAILED, .job_id = 41,
			      .order = "P-1\nUSBFORGE_JOB_ID=999\nPRIORITY=0", .slot = "S=0",
			      .error_code = "DEVICE_GONE"),
		   "probe: hostile order");
	/* 300 two-byte characters: cut to 128 of them (256 bytes), not inside one */
	char serial[601] = "";
	for (int i = 0; i < 300; i++)
		memcpy(serial + 2 * i, "\xc3\xa9", 2);
	/* a message of 20000 bytes: cut to 16384 */
	static char big[20001];
	memset(big, 'm', 20000);
	log_struct(LOG_LVL_ERR, LOG_FIELDS(.job_id = 42, .device_serial = serial), "probe: long %s", big);

	/* the thread context: this thread's messages carry it, another thread's do not */
	log_context_set(LOG_FIELDS(.job_id = 43, .order = "P-3", .unit = 0, .has_unit = true, .attempt = 2,
				   .slot = "S1", .device_serial = "SER-3"));
	log_context_set_stage("writing");
	log_struct_errno(LOG_LVL_ERR, -5, LOG_FIELDS(.error_code = "WRITE_IO", .stage = "verification"),
			 "probe: with context: %m");
	pthread_t t;
	if (pthread_create(&t, NULL, other_thread, NULL) == 0)
		pthread_join(t, NULL);
	log_context_set(NULL);
	log_info("probe: context cleared");
	/* --say-target: whether it took stderr for the journal (on stdout) */
	if (argc > 1 && strcmp(argv[1], "--say-target") == 0)
		printf("journal=%d\n", log_to_journal());
	return 0;
}
