"""The kit's pytest plugin: the learner's summary at the end of a run (see `ftkit check`)."""
