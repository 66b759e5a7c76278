"""`profile-worker backfill`: a file of commands published once, resumably, and accounted for.

One concern a module: `source` turns JSON lines or CSV rows into command bodies, `kinds`
knows which contract a queue speaks, `identity` derives the message ids, `checkpoint` keeps
what is durable across a crash, `publishing` pipelines confirmed publishes, `broker` holds the
channels and the reply queue, `answers` collects the results, `report` writes and tallies
them, `view` shows them, and `job` runs the whole thing top to bottom.
"""
