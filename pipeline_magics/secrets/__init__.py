"""Credentials: references → policy → audit → the Vault session (login, read, renewal) → a run's resolver;
and redaction, which keeps resolved values out of every text. No Spark, no IPython."""
