"""`ftkit grade`: a class's submissions checked in sandboxes, verdicts decided outside them.

`sandbox.py` runs one command in bubblewrap with limits; `verify.py` turns what a worker
wrote into verdicts, trusting only values that match the reference's; `run.py` grades a
folder of submissions; `summary.py` writes the class's CSV and HTML report.
"""
