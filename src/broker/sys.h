/* sys.h - the $SYS topic tree, with Mosquitto's names and meanings,
 * published as retained messages every sys_interval seconds. */
#ifndef PETREL_BROKER_SYS_H
#define PETREL_BROKER_SYS_H

struct worker;

/* Publish the current values (called from worker 0's tick). */
void sys_publish(struct worker *w);

#endif
