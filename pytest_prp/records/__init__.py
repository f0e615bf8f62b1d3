"""What happened: the PRP record (one owner), heartbeats, progress, the batch result, prp-status
and the HTML report.
"""
