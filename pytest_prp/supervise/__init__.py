"""Running one process safely: its group, limits, log, live output and rate limits, and ending
whatever it left running.
"""
