"""The only code that knows Spark itself: its versions and jars, sessions, classic or Connect, job tags and
interrupts, the JVM cause chain, the streaming listener, observations and the running stages."""
